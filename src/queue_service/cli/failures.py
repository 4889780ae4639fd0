"""How a command that cannot run says so: the one place that turns a failure
of configuration or environment into one or two lines an operator can act on
(the problem naming the setting, then what to do) and an exit code.

2: a setting is wrong (the operator must change it). 1: the environment is
not ready (database down, port in use, schema not migrated) or the command
failed. The traceback is printed only with QUEUE_SERVICE_LOG_LEVEL=debug:
behind every message here is a cause the operator can fix without it.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

import typer
from rich.console import Console
from rich.markup import escape

from queue_service.api.state import ConfigurationError
from queue_service.errors import QueueServiceError, StartupError
from queue_service.processors.registry import RegistryError
from queue_service.settings import debug_requested
from queue_service.store.embedded import EmbeddedPostgresError
from queue_service.store.migrate import MigrationError
from queue_service.store.preflight import DEBUG_HINT, database_failure


def explain(exc: BaseException) -> StartupError:
    """What to tell the operator about ``exc``, which stopped a command."""
    if isinstance(exc, StartupError):
        return exc
    found = database_failure(exc)
    if found is not None:
        return found
    if isinstance(exc, ConfigurationError):
        return StartupError(str(exc), "", exit_code=2)
    if isinstance(exc, EmbeddedPostgresError):
        return StartupError(
            str(exc), "or set DATABASE_URL to a PostgreSQL server of your own", exit_code=1
        )
    if isinstance(exc, RegistryError):
        return StartupError(
            str(exc),
            "check QUEUE_SERVICE_PROCESSORS: each module:attribute must be importable by this"
            " Python (installed, or on PYTHONPATH)",
            exit_code=2,
        )
    if isinstance(exc, MigrationError):
        return StartupError(str(exc), "", exit_code=1)
    if isinstance(exc, QueueServiceError):
        return StartupError(str(exc), "", exit_code=1)
    # A failure nobody foresaw: its type and message, and how to see more.
    return StartupError(f"{type(exc).__name__}: {exc}", DEBUG_HINT, exit_code=1)


def report(exc: BaseException, console: Console | None = None) -> int:
    """Print ``exc`` as one or two lines on stderr; return the exit code."""
    console = console or Console(stderr=True)
    if debug_requested():
        traceback.print_exception(exc, file=sys.stderr)
    error = explain(exc)
    console.print(f"[red]error[/red]: {escape(error.problem)}", soft_wrap=True)
    if error.fix:
        console.print(f"  [bold]fix[/bold]: {escape(error.fix)}", soft_wrap=True)
    return error.exit_code


def run_reporting_failures(command: Callable[[], object]) -> None:
    """Run the typer app: its own usage errors and exits pass through; any
    other exception is reported by ``report`` and exits with its code."""
    try:
        command()
    except (typer.Exit, SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:
        sys.exit(report(exc))
