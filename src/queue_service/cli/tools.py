"""The demo and the benchmarks."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated

import orjson
import typer
from rich.table import Table

from queue_service.bench import Workload
from queue_service.cli.app import (
    app,
    cli_database,
    configure_cli_logging,
    err,
    load_cli_settings,
    out,
)
from queue_service.cli.progress import Phases


@app.command()
def demo(
    url: Annotated[
        str | None,
        typer.Option(
            help="A running service to drive (default: start one on a fresh embedded"
            " database with development providers)"
        ),
    ] = None,
    orders: Annotated[int, typer.Option(min=1, max=500, help="Orders to place")] = 12,
    timeout: Annotated[float, typer.Option(min=10, help="Give up after this many seconds")] = 180,
) -> None:
    """Run a realistic order flow through the HTTP API, shown live.

    Payments (some declined), fulfilment, NFT mints, emails, webhooks,
    analytics and partial refunds; a summary at the end."""
    from queue_service.demo import DemoError, run_demo

    settings = load_cli_settings()
    try:
        run_demo(settings, url, orders, timeout, out)
    except DemoError as exc:
        err.print(f"[red]error[/red]: {exc}", soft_wrap=True)
        raise typer.Exit(1) from None


@app.command()
def bench(
    workload: Annotated[
        Workload,
        typer.Option(
            help="What to measure (enqueue-concurrent: --concurrency tasks each enqueueing one"
            " job at a time; payments: 3 worker processes against a local Stripe; try"
            " --jobs 300; purge: drain with and without retention purging --rows old rows)"
        ),
    ] = "drain",
    jobs: Annotated[int, typer.Option(min=1, help="Jobs to enqueue or drain")] = 20_000,
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Batch size")] = 1000,
    concurrency: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    prefetch: Annotated[
        int | None, typer.Option(min=0, help="Claimed-ahead jobs (default: 9 x concurrency)")
    ] = None,
    rate: Annotated[float, typer.Option(min=1, help="latency: jobs per second")] = 200.0,
    duration: Annotated[float, typer.Option(min=1, help="latency: seconds")] = 10.0,
    database_url: Annotated[
        str | None, typer.Option(help="Server to use (a scratch database is created there)")
    ] = None,
    baseline: Annotated[
        bool, typer.Option(help="Also run the plain-SQL baseline loop, the same minute")
    ] = False,
    keep: Annotated[bool, typer.Option(help="Keep the scratch databases")] = False,
    sync: Annotated[
        bool, typer.Option(help="enqueue-*: use the synchronous producer (SyncProducer) instead")
    ] = False,
    rows: Annotated[
        int, typer.Option(min=1, help="purge: finished rows seeded past their retention")
    ] = 1_000_000,
    delayed: Annotated[
        int, typer.Option(min=0, help="drain: delayed jobs (due in a day) seeded first")
    ] = 0,
    history: Annotated[int, typer.Option(min=0, help="drain: finished jobs seeded first")] = 0,
    fair: Annotated[
        bool, typer.Option(help="drain: claim fairly across tenants (QUEUE_SERVICE_FAIR_QUEUES)")
    ] = False,
    tenants: Annotated[
        int, typer.Option(min=1, help="drain: spread the jobs over this many tenants")
    ] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Measure the engine on no-op jobs, or the payments path (docs/benchmarks.md)."""
    from queue_service.bench import BenchOptions, run_bench

    if (delayed or history or fair or tenants > 1) and workload != "drain":
        err.print(
            "[red]error[/red]: --delayed, --history, --fair and --tenants apply to the drain"
            " workload"
        )
        raise typer.Exit(2)
    opts = BenchOptions(
        workload=workload,
        jobs=jobs,
        batch=batch,
        concurrency=concurrency,
        prefetch=prefetch,
        rate=rate,
        duration=duration,
        baseline=baseline,
        keep=keep,
        sync=sync,
        rows=rows,
        delayed=delayed,
        history=history,
        fair=fair,
        tenants=tenants,
    )
    settings = load_cli_settings()
    configure_cli_logging(settings, quiet=True)
    with contextlib.ExitStack() as stack:
        admin = database_url or stack.enter_context(cli_database(settings, migrate=False))
        report = run_bench(settings, admin, opts, progress=Phases(quiet=as_json))
    if as_json:
        sys.stdout.write(orjson.dumps(report).decode() + "\n")
        return
    table = Table(title=f"bench: {workload}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in report.items():
        table.add_row(key, str(value))
    out.print(table)
