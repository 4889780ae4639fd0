"""`queue-service bench`: the engine's throughput and latency on a no-op job,
in a scratch database, optionally beside the plain-SQL baseline loop run in
the same minute against the same server.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from queue_service.bench_http import percentile, run_http_enqueue
from queue_service.core.catalog import QueueConfig
from queue_service.observability.tracing import setup_tracing
from queue_service.runtime.attempt_spans import tracing_hooks
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import (
    Runtime,
    build_fair_indexes,
    freeze_startup_heap,
    loop_factory,
    open_runtime,
)
from queue_service.runtime.worker import Worker
from queue_service.settings import Settings
from queue_service.store import baseline
from queue_service.store.databases import analyze_engine_tables, create_database, drop_database
from queue_service.store.migrate import apply_migrations

Workload = Literal[
    "enqueue-single",
    "enqueue-batch",
    "enqueue-concurrent",
    "drain",
    "latency",
    "http-enqueue",
    "payments",
    "purge",
]
WORKLOADS: tuple[Workload, ...] = get_args(Workload)
BENCH_DB = "queue_service_bench"
BASELINE_DB = "queue_service_bench_raw"
JOB_TYPE = "bench.noop"
TENANT = "bench"
HISTORY_AGE_DAYS = 1  # --history: finished yesterday, inside every retention window
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class BenchOptions:
    workload: Workload
    jobs: int = 20_000
    batch: int = 1000
    concurrency: int = 10
    prefetch: int | None = None  # None: concurrency * 9, the baseline's shape
    rate: float = 200.0
    duration: float = 10.0
    baseline: bool = False
    keep: bool = False
    sync: bool = False  # enqueue workloads through SyncProducer on a sync connection
    rows: int = 1_000_000  # purge: finished rows seeded past their retention
    delayed: int = 0  # drain: delayed jobs (due in a day) seeded in the bench queue first
    history: int = 0  # drain: finished jobs seeded first
    fair: bool = False  # drain: the bench queue claims fairly across tenants (decision 0020)
    tenants: int = 1  # drain: jobs spread round-robin over this many tenants

    @property
    def effective_prefetch(self) -> int:
        return self.concurrency * 9 if self.prefetch is None else self.prefetch


def run_bench(
    settings: Settings, admin_conninfo: str, opts: BenchOptions, progress: Progress = lambda _: None
) -> dict[str, Any]:
    """Run one workload (and the baseline's equivalent); return the figures."""
    report: dict[str, Any] = {"workload": opts.workload, "server": _server_version(admin_conninfo)}
    enqueueing = opts.workload in ("enqueue-single", "enqueue-batch", "enqueue-concurrent")
    raw: str | None = None
    if opts.baseline and opts.workload not in ("latency", "payments", "purge"):
        raw = create_database(admin_conninfo, BASELINE_DB)
    try:
        if raw is not None:
            baseline.setup(raw)
            if opts.workload == "drain":
                progress("baseline: plain-SQL loop")
                report["baseline_rate"] = _baseline_drain(raw, opts)
        conninfo = create_database(admin_conninfo, BENCH_DB)
        apply_migrations(conninfo)
        if opts.workload in ("payments", "purge"):
            return report | _own_module(settings, conninfo, opts, progress)
        progress(
            f"queue-service: {opts.workload}"
            + (" (sync producer)" if opts.sync else "")
            + (", in rounds with the plain-SQL baseline" if enqueueing and raw else "")
        )
        if enqueueing:
            report |= _enqueue(settings, conninfo, opts, raw)
        else:
            # On the event loop the service itself runs (uvloop by default).
            with asyncio.Runner(loop_factory=loop_factory(settings)) as runner:
                report |= runner.run(_ours(settings, conninfo, opts, progress, raw))
    finally:
        if not opts.keep:
            drop_database(admin_conninfo, BENCH_DB)
            if raw is not None:
                drop_database(admin_conninfo, BASELINE_DB)
    if "baseline_rate" in report and report.get("rate"):
        report["ratio_to_baseline"] = round(report["rate"] / report["baseline_rate"], 3)
    return report


def _enqueue(
    settings: Settings, conninfo: str, opts: BenchOptions, raw: str | None
) -> dict[str, Any]:
    """The enqueue workloads: one job at a time, batches, or concurrent tasks."""
    batch = opts.batch if opts.workload == "enqueue-batch" else 1
    if opts.sync and opts.workload != "enqueue-concurrent":
        return _enqueue_sync(settings, conninfo, opts.jobs, batch, raw)
    with asyncio.Runner(loop_factory=loop_factory(settings)) as runner:
        if opts.workload == "enqueue-concurrent":
            return runner.run(
                _enqueue_concurrent(settings, conninfo, opts.jobs, opts.concurrency, raw)
            )
        return runner.run(_enqueue_async(settings, conninfo, opts.jobs, batch, raw))


def _own_module(
    settings: Settings, conninfo: str, opts: BenchOptions, progress: Progress
) -> dict[str, Any]:
    """The workloads that live in a module of their own."""
    if opts.workload == "payments":
        from queue_service.bench_payments import run_payments

        return run_payments(settings, conninfo, opts.jobs, progress)
    from queue_service.bench_purge import run_purge

    return run_purge(settings, conninfo, opts, opts.rows, progress)


def _server_version(conninfo: str) -> str:
    import psycopg

    with psycopg.connect(conninfo) as c:
        row = c.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def _baseline_drain(conninfo: str, opts: BenchOptions) -> float:
    baseline.enqueue_batch(conninfo, opts.jobs, 1000)
    return asyncio.run(baseline.drain(conninfo, opts.jobs, opts.concurrency, 10))


async def _ours(
    settings: Settings, conninfo: str, opts: BenchOptions, progress: Progress, raw: str | None
) -> dict[str, Any]:
    def tune(q: QueueConfig) -> QueueConfig:
        if q.name != "bench":
            return q
        fair = q.fair or opts.fair
        return replace(q, concurrency=opts.concurrency, prefetch=opts.effective_prefetch, fair=fair)

    # OTEL_* set: measured with tracing on, as the service would run (decision 0015).
    tracing = setup_tracing(settings.tracing, environment=settings.queue_service_env)
    try:
        async with open_runtime(settings, conninfo, queue_overrides=tune) as rt:
            # Fair queues (--fair, or QUEUE_SERVICE_FAIR_QUEUES naming any
            # queue) get their partial indexes as a worker would build them.
            await build_fair_indexes(rt, rt.registry.queues)
            freeze_startup_heap()  # as the service's own commands do
            if opts.workload == "http-enqueue":
                return await _http_enqueue(conninfo, opts, progress, raw)
            if opts.workload == "drain":
                seeded = await _seed_backlog(rt, opts, progress)
                for requests in _batches(0, opts.jobs, 1000, opts.tenants):
                    await rt.manager.enqueue_many(requests)
                if seeded:
                    # The worst moment for the planner: every live row waiting,
                    # none active (decision 0017).
                    progress("ANALYZE with everything waiting, nothing active")
                    await asyncio.to_thread(analyze_engine_tables, conninfo)
                progress(f"draining {opts.jobs} jobs")
                shape = {"fair": rt.registry.queue("bench").is_fair, "tenants": opts.tenants}
                return await _drain(rt, opts) | seeded | shape | {"tracing": tracing is not None}
            return await _latency(rt, conninfo, opts, progress)
    finally:
        if tracing is not None:
            tracing.shutdown()


async def _seed_backlog(rt: Runtime, opts: BenchOptions, progress: Progress) -> dict[str, Any]:
    """Seed ``--history`` finished jobs and ``--delayed`` delayed ones before
    the timed phase; reports what was seeded and how long it took."""
    seeded: dict[str, Any] = {}
    t0 = time.perf_counter()
    if opts.history:
        progress(f"seeding {opts.history:,} finished jobs")
        await rt.store.bench_seed_finished(opts.history, HISTORY_AGE_DAYS)
        seeded["history"] = opts.history
    if opts.delayed:
        progress(f"seeding {opts.delayed:,} delayed jobs (due in a day)")
        await rt.store.bench_seed_delayed(
            opts.delayed, queue="bench", job_type=JOB_TYPE, tenant=TENANT
        )
        seeded["delayed"] = opts.delayed
    if seeded:
        seeded["seed_s"] = round(time.perf_counter() - t0, 1)
    return seeded


def _request(i: int, tenants: int = 1) -> EnqueueRequest:
    tenant = TENANT if tenants == 1 else f"{TENANT}-{i % tenants}"
    return EnqueueRequest(type=JOB_TYPE, data={"i": i}, tenant_id=tenant, created_by="bench")


def _batches(lo: int, hi: int, batch: int, tenants: int = 1) -> Iterator[list[EnqueueRequest]]:
    """The requests for jobs ``lo..hi``, ``batch`` at a time (round-robin
    over ``tenants`` tenants)."""
    for start in range(lo, hi, batch):
        yield [_request(i, tenants) for i in range(start, min(hi, start + batch))]


ROUNDS = 5


def _rounds(n: int, batch: int) -> list[tuple[int, int]]:
    """``n`` jobs cut into up to ROUNDS ranges, each a whole number of batches."""
    per = max(batch, -(-n // ROUNDS // batch) * batch)
    return [(lo, min(n, lo + per)) for lo in range(0, n, per)]


class _Rounds:
    """Times ours and the baseline's loop in alternating rounds on the same
    server, so both see the same minute's disk and CPU (the machines here
    drift by ±20% within minutes)."""

    def __init__(self, n: int, batch: int, raw: str | None) -> None:
        import psycopg

        self.n, self.batch = n, batch
        self.ours = 0.0
        self.theirs = 0.0
        self._raw = None if raw is None else psycopg.connect(raw, autocommit=True)

    def baseline(self, lo: int, hi: int) -> None:
        if self._raw is not None:
            self.theirs += baseline.insert_range(self._raw, lo, hi, self.batch)

    def report(self, **extra: Any) -> dict[str, Any]:
        if self._raw is not None:
            self._raw.close()
        out: dict[str, Any] = {"jobs": self.n, "batch": self.batch, **extra}
        if self.theirs:
            out["baseline_rate"] = round(self.n / self.theirs, 1)
            out["rounds"] = len(_rounds(self.n, self.batch))
        out |= {"elapsed_s": round(self.ours, 3), "rate": round(self.n / self.ours, 1)}
        return out


async def _enqueue_async(
    settings: Settings, conninfo: str, n: int, batch: int, raw: str | None
) -> dict[str, Any]:
    """The enqueue workloads through JobManager (validation, ids, RLS role)."""
    async with open_runtime(settings, conninfo) as rt:
        freeze_startup_heap()  # as the service's own commands do
        timer = _Rounds(n, batch, raw)
        for lo, hi in _rounds(n, batch):
            timer.baseline(lo, hi)
            t0 = time.perf_counter()
            for requests in _batches(lo, hi, batch):  # enqueue() is enqueue_many of one
                await rt.manager.enqueue_many(requests)
            timer.ours += time.perf_counter() - t0
        return timer.report()


async def _enqueue_concurrent(
    settings: Settings, conninfo: str, n: int, concurrency: int, raw: str | None
) -> dict[str, Any]:
    """``concurrency`` tasks, each enqueueing one job at a time through
    JobManager.enqueue (coalesced commits: decision 0019), in rounds with the
    plain-SQL single-insert loop."""
    async with open_runtime(settings, conninfo) as rt:
        freeze_startup_heap()
        timer = _Rounds(n, 1, raw)
        latencies: list[float] = []

        async def producer(jobs: range) -> None:
            for i in jobs:
                t0 = time.perf_counter()
                await rt.manager.enqueue(_request(i))
                latencies.append((time.perf_counter() - t0) * 1000)

        for lo, hi in _rounds(n, 1):
            await asyncio.to_thread(timer.baseline, lo, hi)
            t0 = time.perf_counter()
            await asyncio.gather(
                *(producer(range(lo + k, hi, concurrency)) for k in range(concurrency))
            )
            timer.ours += time.perf_counter() - t0
        coalescer = rt.db.coalescer
        commits = coalescer.commits if coalescer is not None else n
        lat = sorted(latencies)
        return timer.report(
            concurrency=concurrency,
            commits=commits,
            jobs_per_commit=round(n / max(commits, 1), 1),
            p50_ms=percentile(lat, 50),
            p99_ms=percentile(lat, 99),
        )


async def _http_enqueue(
    conninfo: str, opts: BenchOptions, progress: Progress, raw: str | None
) -> dict[str, Any]:
    """POST /jobs against one API process; with --baseline, the plain-SQL
    single-insert loop runs half before and half after it, the same minutes."""
    if raw is None:
        return await run_http_enqueue(conninfo, opts.jobs, opts.concurrency, progress)
    import psycopg

    half = opts.jobs // 2
    with psycopg.connect(raw, autocommit=True) as c:
        theirs = await asyncio.to_thread(baseline.insert_range, c, 0, half, 1)
        report = await run_http_enqueue(conninfo, opts.jobs, opts.concurrency, progress)
        theirs += await asyncio.to_thread(baseline.insert_range, c, half, opts.jobs, 1)
    return report | {"baseline_rate": round(opts.jobs / theirs, 1)}


def _enqueue_sync(
    settings: Settings, conninfo: str, n: int, batch: int, raw: str | None
) -> dict[str, Any]:
    """The enqueue workloads through SyncProducer on one autocommit connection."""
    import psycopg

    from queue_service.runtime.producer import SyncProducer

    producer = SyncProducer.from_settings(settings)
    freeze_startup_heap()
    timer = _Rounds(n, batch, raw)
    with psycopg.connect(conninfo, autocommit=True, prepare_threshold=2) as conn:
        conn.execute("SET ROLE queue_service_engine")
        for lo, hi in _rounds(n, batch):
            timer.baseline(lo, hi)
            t0 = time.perf_counter()
            for requests in _batches(lo, hi, batch):
                producer.enqueue_many(conn, requests)
            timer.ours += time.perf_counter() - t0
    return timer.report(api="sync")


async def _drain(rt: Runtime, opts: BenchOptions) -> dict[str, Any]:
    worker = Worker(
        rt.manager,
        [rt.registry.queue("bench")],
        deps=rt.deps,
        listen_conninfo=rt.conninfo,
        poll_interval=0.5,
        hooks=tracing_hooks(),  # as a service worker's: none with tracing off
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    # A 10 ms poll of an in-process counter: the measure itself comes from
    # the database's timestamps, so the poll adds nothing to it.
    while worker.processed < opts.jobs and not task.done():  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    stop.set()
    await task
    first, last, count = await rt.store.bench_window(JOB_TYPE)
    if first is None or last is None:
        raise RuntimeError("no benchmark job completed")
    elapsed = (last - first).total_seconds()
    return {
        "jobs": count,
        "concurrency": opts.concurrency,
        "prefetch": opts.effective_prefetch,
        "elapsed_s": round(elapsed, 3),
        "rate": round(count / elapsed, 1),
    }


def _latency_worker(conninfo: str, concurrency: int, ready: Any) -> None:
    """The worker process of the latency workload (spawned)."""
    from queue_service.settings import load_settings

    settings = load_settings()

    async def main() -> None:
        from queue_service.observability.logging import configure_logging

        configure_logging("warning")

        def tune(q: QueueConfig) -> QueueConfig:
            return replace(q, concurrency=concurrency) if q.name == "bench" else q

        async with open_runtime(settings, conninfo, queue_overrides=tune) as rt:
            stop = asyncio.Event()
            from queue_service.runtime.service import install_signal_handlers

            install_signal_handlers(stop)
            worker = Worker(
                rt.manager,
                [rt.registry.queue("bench")],
                deps=rt.deps,
                listen_conninfo=conninfo,
                grace_seconds=5,
            )
            freeze_startup_heap()
            ready.set()
            await worker.run(stop)

    with asyncio.Runner(loop_factory=loop_factory(settings)) as runner:
        runner.run(main())


async def _latency(
    rt: Runtime, conninfo: str, opts: BenchOptions, progress: Progress
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_latency_worker, args=(conninfo, opts.concurrency, ready))
    proc.start()
    try:
        if not await asyncio.to_thread(ready.wait, 60):
            raise RuntimeError("the benchmark worker process did not start")
        await asyncio.sleep(1.0)  # let it LISTEN and settle
        total = int(opts.rate * opts.duration)
        progress(f"producing {total} jobs at {opts.rate:g}/s for {opts.duration:g} s")
        t0 = time.perf_counter()
        late = 0
        for i in range(total):
            target = t0 + i / opts.rate
            now = time.perf_counter()
            if target > now:
                await asyncio.sleep(target - now)
            elif now - target > 0.005:
                late += 1
            await rt.manager.enqueue(_request(i))
        achieved = total / (time.perf_counter() - t0)
        deadline = time.monotonic() + 60
        while (await rt.store.bench_window(JOB_TYPE))[2] < total:
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark worker did not finish the jobs in time")
            await asyncio.sleep(0.05)
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.join, 30)
    lat = sorted(await rt.store.bench_latencies(JOB_TYPE))
    return {
        "jobs": len(lat),
        "rate_target": opts.rate,
        "rate_achieved": round(achieved, 1),
        "late_sends": late,
        "concurrency": opts.concurrency,
        "p50_ms": percentile(lat, 50),
        "p95_ms": percentile(lat, 95),
        "p99_ms": percentile(lat, 99),
        "max_ms": round(lat[-1], 2),
        "mean_ms": round(statistics.fmean(lat), 2),
    }
