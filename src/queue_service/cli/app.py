"""The command line's root: the typer app, its sub-apps, the consoles, and how
a command gets its settings, database and runtime with clear one-line errors."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import orjson
import structlog
import typer
from pydantic import ValidationError
from rich.console import Console

from queue_service.cli.failures import report
from queue_service.errors import QueueServiceError, StartupError, UnknownJobTypeError
from queue_service.processors.registry import configured_registry
from queue_service.runtime.service import (
    Runtime,
    open_runtime,
)
from queue_service.settings import Settings, load_settings
from queue_service.store.migrate import apply_migrations
from queue_service.store.preflight import check_database

app = typer.Typer(
    help="queue-service: a durable PostgreSQL job queue.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
dlq_app = typer.Typer(help="Dead-letter queue: list, replay, delete.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
rate_limits_app = typer.Typer(
    help="Outbound rate limits: status, emergency stop, reset.", no_args_is_help=True
)
app.add_typer(rate_limits_app, name="rate-limits")
webhooks_app = typer.Typer(
    help="Webhook endpoints per tenant: list, add, remove, enable, rotate.", no_args_is_help=True
)
app.add_typer(webhooks_app, name="webhooks")
# Where a process command's --help sends readers for its settings.
SETTINGS_HELP = (
    "Configured by environment variables (each secret also as NAME_FILE, a path to"
    " read it from): every setting, its default and meaning is in the README's"
    " 'Configuration' table; docs/contract.md §10 lists the stable names,"
    " docs/deployment.md the container defaults."
)
# Piped output (CI logs, files) gets room for the whole table, not 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)
T = TypeVar("T")
# The CLI loads job types as every process does: a type the service runs may
# still be unknown here when this shell lacks the variables.
UNKNOWN_TYPE_HINT = (
    "hint: job types come from installed plug-ins and QUEUE_SERVICE_PROCESSORS (with"
    " PYTHONPATH for code that is not installed), which the CLI needs as the service does;"
    " `queue-service types` lists what this configuration loads"
)
log = structlog.get_logger("queue_service.cli")


def load_cli_settings() -> Settings:
    """The settings, or a StartupError naming each variable that is wrong
    (a ``*_FILE`` that cannot be read raises one from load_settings itself)."""
    try:
        return load_settings()
    except ValidationError as exc:
        problems = []
        for e in exc.errors(include_url=False):
            name = ".".join(str(p) for p in e["loc"]).upper()
            said = str(e["msg"]).removeprefix("Value error, ")  # our validators' own words
            problems.append(f"{name}: {said}" if name else said)
        raise StartupError(
            "configuration error: " + "; ".join(problems),
            "correct the variable (README, Configuration)",
        ) from None


@contextlib.contextmanager
def cli_database(settings: Settings, *, migrate: bool | None = None) -> Iterator[str]:
    """The database a command runs on, checked before any pool opens: one
    quick connection that fails in seconds naming the setting, and with
    QUEUE_SERVICE_AUTO_MIGRATE=false, a schema that is migrated."""
    from queue_service.store.embedded import database_conninfo

    migrating = migrate if migrate is not None else settings.queue_service_auto_migrate
    with database_conninfo(settings) as conninfo:
        setting = "DATABASE_URL" if settings.database_url is not None else "the embedded store"
        check_database(
            conninfo, setting=setting, require_migrated=migrate is None and not migrating
        )
        if migrating:
            # The engine's and every configured plug-in's (docs/job-types.md).
            applied = apply_migrations(conninfo, configured_registry(settings).migration_sets)
            if applied:
                err.print(f"applied migrations: {', '.join(applied)}")
        yield conninfo


def configure_cli_logging(settings: Settings, *, quiet: bool = False) -> None:
    from queue_service.observability.logging import configure_logging

    level = "warning" if quiet else settings.queue_service_log_level
    configure_logging(level, json=not sys.stderr.isatty(), stream=sys.stderr)


def run_on_runtime(fn: Callable[[Runtime], Awaitable[T]], *, quiet: bool = True) -> T:
    """Open the database and run ``fn``; errors become one clear line."""
    settings = load_cli_settings()
    configure_cli_logging(settings, quiet=quiet)

    async def main(conninfo: str) -> T:
        async with open_runtime(settings, conninfo, pool_size=4) as runtime:
            return await fn(runtime)

    try:
        with cli_database(settings) as conninfo:
            return asyncio.run(main(conninfo))
    except QueueServiceError as exc:
        # A refused operation (1), or a start-up failure with its own code.
        code = report(exc, err)
        if isinstance(exc, UnknownJobTypeError):
            err.print(UNKNOWN_TYPE_HINT, soft_wrap=True)
        raise typer.Exit(code) from None


def json_object_option(text: str, option: str = "--data") -> dict[str, Any]:
    """A JSON object given on the command line, or exit 2 saying what is wrong."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        err.print(f"[red]error[/red]: {option} is not valid JSON: {exc}")
        raise typer.Exit(2) from None
    if not isinstance(value, dict):
        err.print(f"[red]error[/red]: {option} must be a JSON object, e.g. '{{\"i\": 1}}'")
        raise typer.Exit(2)
    return value
