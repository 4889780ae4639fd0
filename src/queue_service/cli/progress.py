"""How long commands show progress: rich bars on a terminal; nothing live when
stderr is piped (a CI log, a file) or with --json, where only the result is
printed. Phase lines (bench) are plain text when piped and absent with --json."""

from __future__ import annotations

import time
from collections.abc import Iterable

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from queue_service.cli.app import err
from queue_service.core.migration_sets import MigrationSet


def live(*, quiet: bool = False) -> bool:
    """Whether to draw live progress: on a terminal, and not asked for JSON."""
    return not quiet and err.is_terminal


def progress_bar(*, quiet: bool = False) -> Progress:
    """A bar per task on stderr, drawn only when ``live``."""
    return Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not live(quiet=quiet),
        transient=False,
    )


class Phases:
    """Announce each phase of a long command on stderr with the time since the
    command started; a plain line when piped, nothing when ``quiet``. No live
    display: bench measures this process, and a redraw thread would be in
    the measurement."""

    def __init__(self, *, quiet: bool = False) -> None:
        self._quiet = quiet
        self._started = time.monotonic()

    def __call__(self, message: str) -> None:
        if self._quiet:
            return
        elapsed = time.monotonic() - self._started
        # rich drops the styles itself when stderr is not a terminal.
        err.print(f"[dim]{elapsed:6.1f} s[/dim]  {message}", highlight=False, soft_wrap=True)


def migrate_with_progress(conninfo: str, plugins: Iterable[MigrationSet] = ()) -> list[str]:
    """Apply pending migrations (the engine's, then ``plugins``') with a bar
    naming the one running (a long CREATE INDEX CONCURRENTLY shows which);
    the labels applied."""
    from queue_service.store.migrate import apply_migrations, pending_migrations

    if not live():
        return apply_migrations(conninfo, plugins)
    with progress_bar() as bar:
        task = bar.add_task("migrations", total=len(pending_migrations(conninfo, plugins)))
        started = 0

        def on_apply(name: str) -> None:
            nonlocal started
            bar.update(task, completed=started, description=name)
            started += 1

        applied = apply_migrations(conninfo, plugins, on_apply=on_apply)
        bar.update(task, completed=len(applied), total=len(applied), description="migrations")
    return applied
