"""`queue-service bench --workload purge`: does retention's purge slow the
engine down? Seeds ``rows`` finished jobs past their retention (one INSERT ...
SELECT generate_series), then drains ``jobs`` no-op jobs three times through
the drain workload's own code path: alone, while the purge runs (every
category, batches of 1,000, each its own statement), and alone again.
Reports both rates and their ratio (decision 0016 wants >= 0.8)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from queue_service.core.catalog import QueueConfig
from queue_service.processors.retention import BATCH, PACE, categories, purge
from queue_service.runtime.service import Runtime, open_runtime
from queue_service.settings import Settings

if TYPE_CHECKING:
    from queue_service.bench import BenchOptions

SEED_AGE_DAYS = 400  # past every window, the 365-day mints' included
Progress = Callable[[str], None]


async def _purge_until(
    rt: Runtime, stop: asyncio.Event, stats: dict[str, Any], pace: float
) -> None:
    """Purge every category in batches, paced as cleanup.run paces them,
    until told to stop (or nothing is left)."""
    slowest = 0.0
    removed = 0

    def seen(_: object, n: int) -> None:
        nonlocal removed
        removed += n

    started = time.perf_counter()
    for category in categories(rt.store, rt.settings):
        while not stop.is_set():
            t0 = time.perf_counter()
            n = await purge(category, batch=BATCH, max_batches=1, pace=0, progress=seen)
            took = time.perf_counter() - t0
            slowest = max(slowest, took)
            if n < BATCH:
                break
            await asyncio.sleep(took * pace)
    stats.update(
        purged_rows=removed,
        purge_rows_per_s=round(removed / max(time.perf_counter() - started, 1e-9)),
        slowest_batch_ms=round(slowest * 1000, 1),
    )


async def _measure(
    settings: Settings,
    conninfo: str,
    opts: BenchOptions,
    rows: int,
    progress: Progress,
    pace: float,
) -> dict[str, Any]:
    from queue_service.bench import JOB_TYPE, _batches, _drain

    def tune(q: QueueConfig) -> QueueConfig:
        if q.name != "bench":
            return q
        return replace(q, concurrency=opts.concurrency, prefetch=opts.effective_prefetch)

    async with open_runtime(settings, conninfo, queue_overrides=tune) as rt:
        progress(f"seeding {rows:,} finished jobs {SEED_AGE_DAYS} days old")
        t0 = time.perf_counter()
        await rt.store.bench_seed_finished(rows, SEED_AGE_DAYS)
        seeded_s = time.perf_counter() - t0

        async def drain(with_purge: bool) -> tuple[float, dict[str, Any]]:
            for requests in _batches(0, opts.jobs, 1000):
                await rt.manager.enqueue_many(requests)
            stats: dict[str, Any] = {}
            stop = asyncio.Event()
            purging = (
                asyncio.create_task(_purge_until(rt, stop, stats, pace)) if with_purge else None
            )
            try:
                result = await _drain(rt, opts)
            finally:
                stop.set()
                if purging is not None:
                    await purging
            await rt.store.bench_forget(JOB_TYPE)
            return float(result["rate"]), stats

        progress(f"draining {opts.jobs:,} jobs alone")
        before, _ = await drain(False)
        progress(f"draining {opts.jobs:,} jobs while the purge runs")
        during, stats = await drain(True)
        progress(f"draining {opts.jobs:,} jobs alone again")
        after, _ = await drain(False)
    alone = (before + after) / 2
    return {
        "seeded_rows": rows,
        "seed_s": round(seeded_s, 1),
        "jobs": opts.jobs,
        "concurrency": opts.concurrency,
        "rate_alone_before": before,
        "rate_during_purge": during,
        "rate_alone_after": after,
        "ratio": round(during / alone, 3),
        "pace": pace,
        **stats,
    }


def run_purge(
    settings: Settings,
    conninfo: str,
    opts: BenchOptions,
    rows: int,
    progress: Progress,
    pace: float = PACE,
) -> dict[str, Any]:
    from queue_service.runtime.service import loop_factory

    with asyncio.Runner(loop_factory=loop_factory(settings)) as runner:
        return runner.run(_measure(settings, conninfo, opts, rows, progress, pace))
