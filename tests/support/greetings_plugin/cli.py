"""`queue-service` as a shell with the plug-in configured would run it."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.processes import REPO

PLUGIN = "tests.support.greetings_plugin:PROCESSORS"


def cli(database_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "queue_service.cli", *args],
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "QUEUE_SERVICE_PROCESSORS": PLUGIN,
            "PYTHONPATH": str(REPO),
            "COLUMNS": "200",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
