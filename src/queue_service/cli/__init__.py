"""The ``queue-service`` command line: the app (cli/app.py) and its commands,
one module per area."""

from __future__ import annotations

from queue_service.cli import (
    alerts,
    jobs,
    limits,
    retention,
    schedules,
    service,
    tools,
    types,
    webhooks,
)
from queue_service.cli.app import app
from queue_service.cli.failures import run_reporting_failures

# `--help` lists the commands in the order an operator meets them.
ORDER = (
    "serve",
    "api",
    "worker",
    "migrate",
    "status",
    "enqueue",
    "types",
    "pause",
    "resume",
    "retention",
    "demo",
    "bench",
    "token",
)
app.registered_commands.sort(
    key=lambda c: ORDER.index(c.name or c.callback.__name__) if c.callback else len(ORDER)
)

__all__ = [
    "alerts",
    "app",
    "jobs",
    "limits",
    "main",
    "retention",
    "schedules",
    "service",
    "tools",
    "types",
    "webhooks",
]


def main() -> None:
    run_reporting_failures(app)
