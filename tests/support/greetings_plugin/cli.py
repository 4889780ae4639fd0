"""`queue-service` as a shell with the plug-in configured would run it."""

from __future__ import annotations

import subprocess

from tests.support.processes import run_cli

PLUGIN = "tests.support.greetings_plugin:PROCESSORS"


def cli(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(database_url, *args, processors=PLUGIN, **env)
