"""Per-minute snapshots (queue_metrics), their retention, and the scrape-time
gauge reading's cache."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from queue_service.runtime.duties.snapshots import MetricSnapshotDuty
from queue_service.runtime.gauges import DatabaseGauges
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime

MOVE_TO_FINISHED = """
WITH gone AS (DELETE FROM jobs WHERE id = ANY(%(ids)s) RETURNING *)
INSERT INTO finished_jobs (id, tenant_id, queue, type, status, priority, data, attempts,
                           max_attempts, stalled_count, max_stalled, lease_seconds,
                           created_at, run_at, finished_at)
SELECT id, tenant_id, queue, type, %(status)s, priority, data, 1, max_attempts, 0,
       max_stalled, lease_seconds, created_at, run_at,
       date_trunc('minute', now()) - %(ago)s::interval
FROM gone
"""


def echo(value: int, tenant: str) -> EnqueueRequest:
    return EnqueueRequest(type="test.echo", data={"value": value}, tenant_id=tenant)


def sql(url: str, query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description is not None else []


async def same_minute_for_a_while(url: str) -> None:
    """The rows are placed relative to the database's current minute and the
    snapshot must be taken in that minute: start a test that would straddle
    a minute's end in the next one (a wait for the clock, not a condition)."""
    (left,) = sql(
        url, "SELECT extract(epoch FROM date_trunc('minute', now()) + interval '1 minute' - now())"
    )[0]
    if float(left) < 5:
        await asyncio.sleep(float(left) + 0.1)


async def finish(runtime: Runtime, url: str, n: int, status: str, ago: str, tenant: str) -> None:
    ids = [(await runtime.manager.enqueue(echo(i, tenant))).job_id for i in range(n)]
    sql(url, MOVE_TO_FINISHED, {"ids": ids, "status": status, "ago": ago})


async def test_a_snapshot_counts_the_minute_before_and_is_written_once_per_minute(
    runtime: Runtime, database_url: str
) -> None:
    await same_minute_for_a_while(database_url)
    await finish(runtime, database_url, 4, "completed", "30 seconds", "t1")
    await finish(runtime, database_url, 2, "failed", "10 seconds", "t1")
    await finish(runtime, database_url, 5, "completed", "90 seconds", "t1")  # two minutes ago
    await finish(runtime, database_url, 1, "completed", "20 seconds", "t2")
    for i in range(3):
        await runtime.manager.enqueue(echo(i, "t2"))
    duty = MetricSnapshotDuty(runtime.store)

    await duty.run()
    await duty.run()  # the same minute: nothing more

    rows = sql(
        database_url,
        "SELECT tenant_id, queue, waiting, delayed, active, completed, failed, cancelled"
        " FROM queue_metrics ORDER BY tenant_id",
    )
    assert rows == [("t1", "test", 0, 0, 0, 4, 2, 0), ("t2", "test", 3, 0, 0, 1, 0, 0)]
    history = await runtime.store.metric_history(3600)
    assert [(h.queue, h.waiting, h.completed, h.failed) for h in history] == [("test", 3, 5, 2)]
    (mine,) = await runtime.store.metric_history(3600, "t2")
    assert (mine.waiting, mine.completed) == (3, 1)


async def test_snapshots_older_than_the_retention_are_purged_in_batches(
    runtime: Runtime, database_url: str
) -> None:
    sql(
        database_url,
        "INSERT INTO queue_metrics (at, tenant_id, queue, waiting, delayed, active, completed,"
        " failed, cancelled)"
        " SELECT date_trunc('minute', now()) - make_interval(days => d, mins => m),"
        "        't1', 'test', 0, 0, 0, 0, 0, 0"
        " FROM (VALUES (1), (29), (31), (40)) AS v(d), generate_series(0, 2) AS m",
    )

    first = await runtime.store.purge_metric_snapshots(30, limit=4)
    second = await runtime.store.purge_metric_snapshots(30, limit=4)

    assert (first, second) == (4, 2)
    (left,) = sql(database_url, "SELECT count(*) FROM queue_metrics")[0]
    assert left == 6


class CountingStore:
    """The store, counting the live-jobs reads that reach the database."""

    def __init__(self, runtime: Runtime) -> None:
        self._store = runtime.store
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def metric_live_queues(self, tenant: str | None = None) -> Any:
        self.reads += 1
        await asyncio.sleep(0.05)  # a slow database: scrapers arrive meanwhile
        return await self._store.metric_live_queues(tenant)


async def test_concurrent_scrapes_within_a_second_cost_one_database_read(
    runtime: Runtime,
) -> None:
    store = CountingStore(runtime)
    gauges = DatabaseGauges(
        store,  # type: ignore[arg-type]
        ["test"],
        runtime.settings.outbound_limits,
        runtime.settings.breaker_policy,
        max_age=1.0,
    )

    readings = await asyncio.gather(*(gauges.read() for _ in range(10)))
    again = await gauges.read()

    assert store.reads == 1
    assert all(r is readings[0] for r in [*readings, again])
    gauges.max_age = 0.0
    await gauges.read()
    assert store.reads == 2
