"""`queue-service retention`: per category what is past its window (a dry
run, capped counts) or purge it now in batches with a progress display."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer
from rich.table import Table

from queue_service.cli.app import app, out, run_on_runtime
from queue_service.cli.progress import progress_bar
from queue_service.processors.retention import BATCH, PACE, Category, categories, purge
from queue_service.runtime.service import Runtime

DEFAULT_CAP = 1_000_000


def _shown(count: int, cap: int) -> str:
    return f"≥ {count:,}" if count >= cap else f"{count:,}"


@app.command()
def retention(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; remove nothing")
    ] = False,
    cap: Annotated[
        int, typer.Option(min=1, help="Stop counting a category at this many rows")
    ] = DEFAULT_CAP,
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per batch")] = BATCH,
    pace: Annotated[
        float,
        typer.Option(min=0, help="Rest this many times a batch's duration after it (0: none)"),
    ] = PACE,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """What retention purges or archives, per category; without --dry-run, purge it now."""

    async def count(rt: Runtime) -> list[tuple[Category, int]]:
        found = categories(rt.store, rt.settings)
        return [(c, await c.count(cap)) for c in found]

    if dry_run:
        rows = run_on_runtime(count)
        if as_json:
            report = {c.name: {"rows": n, "capped": n >= cap} for c, n in rows}
            out.print_json(orjson.dumps(report).decode())
            return
        table = Table(title="retention: past their window (dry run, nothing removed)")
        for column in ("category", "rows", "window", "then", "what", "purged by"):
            table.add_column(column, justify="right" if column == "rows" else "left")
        for c, n in rows:
            then = "archived" if c.archived else "deleted"
            table.add_row(c.name, _shown(n, cap), c.window, then, c.what, c.job)
        out.print(table)
        return

    async def run(rt: Runtime) -> dict[str, int]:
        found = categories(rt.store, rt.settings)
        removed: dict[str, int] = {}
        with progress_bar(quiet=as_json) as bar:
            tasks = {c.name: bar.add_task(c.name, total=await c.count(cap)) for c in found}

            def advance(c: Category, n: int) -> None:
                bar.advance(tasks[c.name], n)

            for c in found:
                removed[c.name] = await purge(c, batch=batch, pace=pace, progress=advance)
                bar.update(tasks[c.name], total=removed[c.name], completed=removed[c.name])
        return removed

    removed = run_on_runtime(run)
    if as_json:
        out.print_json(orjson.dumps(removed).decode())
        return
    out.print(
        f"removed {sum(removed.values()):,} rows: "
        + ", ".join(f"{name} {n:,}" for name, n in removed.items() if n)
        if any(removed.values())
        else "nothing past its window"
    )
