"""Fair tenants (issue 9 item 5, decision 0020): in a fair queue one tenant's
backlog does not starve another tenant's jobs, a per-tenant cap holds across
worker processes, and queues that are not fair pay nothing for it (their
inserts never touch a fair queue's indexes, their claims stay job_claim).
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import psycopg
import pytest
from psycopg import ClientCursor

from queue_service.core.catalog import QueueConfig
from queue_service.processors.base import Payload, processor
from queue_service.processors.context import JobContext
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime, build_fair_indexes, open_runtime
from queue_service.runtime.worker import Worker
from queue_service.store.db import ENGINE_ROLE
from queue_service.store.fair import _statement, ensure_fair_indexes, fair_index_names
from tests.integration.conftest import make_settings
from tests.integration.test_plans import _nodes, _per_row_rescans, _prepared
from tests.support.waiting import eventually
from tests.support.workers import worker_running

FAIR_QUEUE = QueueConfig("fair", concurrency=10)
PLAIN_QUEUE = QueueConfig("unfair", concurrency=10)
BACKLOG = 100_000  # the figure
LATE = 100

running: Counter[str] = Counter()
most: Counter[str] = Counter()


class WorkPayload(Payload):
    seconds: float = 0.01


@processor("fair.work", payload=WorkPayload, queue="fair")
async def work(ctx: JobContext, p: WorkPayload) -> None:
    tenant = ctx.job.tenant_id
    running[tenant] += 1
    most[tenant] = max(most[tenant], running[tenant])
    try:
        await asyncio.sleep(p.seconds)
    finally:
        running[tenant] -= 1


@processor("unfair.work", payload=WorkPayload, queue="unfair")
async def unfair_work(ctx: JobContext, p: WorkPayload) -> None:
    await asyncio.sleep(p.seconds)


@asynccontextmanager
async def fair_runtime(database_url: str, **settings: Any) -> AsyncIterator[Runtime]:
    async with open_runtime(
        make_settings(database_url, **settings),
        database_url,
        extra_processors=[FAIR_QUEUE, PLAIN_QUEUE, work, unfair_work],
    ) as rt:
        yield rt


@asynccontextmanager
async def worker(rt: Runtime, queue: str = "fair") -> AsyncIterator[Worker]:
    """A worker of ``queue``, started as the service starts one (the queue's
    fair indexes built first)."""
    await build_fair_indexes(rt, [rt.registry.queue(queue)])
    async with worker_running(rt, (queue,)) as w:
        yield w


async def enqueue(
    rt: Runtime, tenant: str, n: int, seconds: float = 0.01, job_type: str = "fair.work"
) -> None:
    for start in range(0, n, 1000):
        await rt.manager.enqueue_many(
            [
                EnqueueRequest(type=job_type, data={"seconds": seconds}, tenant_id=tenant)
                for _ in range(start, min(n, start + 1000))
            ]
        )


def seed_backlog(database_url: str, tenant: str, rows: int) -> None:
    """``rows`` ready jobs of ``tenant`` in one INSERT ... SELECT (enqueueing
    100,000 jobs one batch at a time would take most of the test)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobs (id, tenant_id, queue, type, data, max_attempts, max_stalled,"
            " lease_seconds, run_at)"
            " SELECT gen_random_uuid(), %s, 'fair', 'fair.work', '{}', 3, 3, 30,"
            "        now() - interval '1 minute' + make_interval(secs => i / 1000.0)"
            " FROM generate_series(1, %s) AS i",
            (tenant, rows),
        )


def start_delays(database_url: str, tenant: str) -> list[float]:
    """Seconds from enqueue to first start of each started job of ``tenant``
    (finished or still held), on the database clock."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM started_at - created_at)::float8 FROM finished_jobs"
            " WHERE tenant_id = %s AND type = 'fair.work'"
            " UNION ALL SELECT extract(epoch FROM started_at - created_at)::float8 FROM jobs"
            " WHERE tenant_id = %s AND type = 'fair.work' AND started_at IS NOT NULL",
            (tenant, tenant),
        ).fetchall()
    return sorted(r[0] for r in rows)


def finished(database_url: str, tenant: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM finished_jobs WHERE tenant_id = %s", (tenant,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def p99(values: list[float]) -> float:
    return values[max(0, math.ceil(0.99 * len(values)) - 1)]


async def test_a_late_tenant_s_jobs_start_within_two_seconds_behind_a_100000_job_backlog(
    database_url: str,
) -> None:
    seed_backlog(database_url, "tenant-a", BACKLOG)
    async with (
        fair_runtime(database_url, queue_service_fair_queues="fair") as rt,
        worker(rt),
    ):
        assert rt.registry.queue("fair").is_fair

        async def a_draining() -> bool:
            return finished(database_url, "tenant-a") >= 200

        await eventually(a_draining, what="tenant A's backlog drains", timeout=30)
        await enqueue(rt, "tenant-b", LATE)

        async def b_done() -> bool:
            return finished(database_url, "tenant-b") == LATE

        await eventually(b_done, what="tenant B's jobs finish", timeout=30)
        delays = start_delays(database_url, "tenant-b")
        a_left = BACKLOG - finished(database_url, "tenant-a")
    assert len(delays) == LATE
    assert p99(delays) < 2.0, delays
    # A was still draining: B did not simply run after A's backlog.
    assert a_left > 10_000, a_left


async def test_without_fairness_the_late_tenant_waits_behind_the_backlog(
    database_url: str,
) -> None:
    seed_backlog(database_url, "tenant-a", BACKLOG)
    async with fair_runtime(database_url) as rt, worker(rt):
        assert not rt.registry.queue("fair").is_fair

        async def a_draining() -> bool:
            return finished(database_url, "tenant-a") >= 200

        await eventually(a_draining, what="tenant A's backlog drains", timeout=30)
        await enqueue(rt, "tenant-b", LATE)
        a_before = finished(database_url, "tenant-a")
        await asyncio.sleep(3)
        a_after = finished(database_url, "tenant-a")
        b_started = start_delays(database_url, "tenant-b")
    # FIFO across tenants: three seconds in, A kept running and B had not
    # started (what the test above shows fairness fixes).
    assert a_after - a_before > 500
    assert b_started == []


async def test_the_per_tenant_cap_holds_across_worker_processes(database_url: str) -> None:
    running.clear()
    most.clear()
    settings = {"queue_service_tenant_concurrency": '{"fair": 3}'}
    async with AsyncExitStack() as stack:
        # Two runtimes, two pools, two workers: two claimers as far as the
        # database can tell, each with room for 10 jobs.
        first = await stack.enter_async_context(fair_runtime(database_url, **settings))
        second = await stack.enter_async_context(fair_runtime(database_url, **settings))
        assert first.registry.queue("fair").tenant_concurrency == 3
        await enqueue(first, "tenant-a", 150, seconds=0.02)
        await enqueue(first, "tenant-b", 150, seconds=0.02)
        await stack.enter_async_context(worker(first))
        await stack.enter_async_context(worker(second))

        async def drained() -> bool:
            return finished(database_url, "tenant-a") + finished(database_url, "tenant-b") == 300

        await eventually(drained, what="both tenants drain", timeout=60)
    # At most 3 of a tenant at once across both workers (6 would mean a
    # per-process cap), and the cap was reached (the test can fail both ways).
    assert most["tenant-a"] == 3 and most["tenant-b"] == 3, most


async def test_with_more_tenants_than_slots_every_tenant_gets_a_turn(database_url: str) -> None:
    """20 tenants, 10 slots: a claim cannot give each a job, so the turn goes
    round (each claim starts after the last tenant the worker was given);
    without it the alphabetically first tenants would take every slot."""
    tenants = [f"t{i:02}" for i in range(20)]
    async with fair_runtime(database_url, queue_service_fair_queues="fair") as rt:
        for tenant in reversed(tenants):
            await enqueue(rt, tenant, 20, seconds=0.05)
        async with worker(rt):

            async def some_done() -> bool:
                return sum(finished(database_url, t) for t in tenants) >= 60

            await eventually(some_done, what="60 jobs finish", timeout=60)
        served = {t: finished(database_url, t) for t in tenants}
    assert all(n > 0 for n in served.values()), served


@pytest.mark.parametrize("cap", [None, 5])
async def test_a_paused_tenant_gets_nothing_and_leaves_its_share_to_the_others(
    database_url: str, cap: int | None
) -> None:
    """Pausing one tenant of a fair queue: none of its jobs is claimed, and
    the claim shares its whole limit among the tenants still running; a
    pause of the whole queue ('*') stops every tenant."""
    settings: dict[str, Any] = {"queue_service_fair_queues": "fair"}
    async with fair_runtime(database_url, **settings) as rt:
        await build_fair_indexes(rt, [rt.registry.queue("fair")])
        for tenant in ("t-a", "t-b", "t-c"):
            await enqueue(rt, tenant, 10)
        await rt.store.pause_queue("fair", "t-b", "ops")

        claimed = await rt.store.claim_fair("fair", ["fair.work"], 12, "w1", cap=cap)

        by_tenant = Counter(j.tenant_id for j in claimed)
        share = 6 if cap is None else 5
        assert by_tenant == {"t-a": share, "t-c": share}, by_tenant

        await rt.store.pause_queue("fair", "*", "ops")
        assert await rt.store.claim_fair("fair", ["fair.work"], 12, "w1", cap=cap) == []


async def test_a_capped_fair_queue_works_through_pgbouncer(
    database_url: str, pgbouncer_url: str
) -> None:
    """Pool through PgBouncer in transaction mode (no prepared statements, the
    claim lock a transaction lock), the index build on the direct URL."""
    running.clear()
    most.clear()
    settings = make_settings(
        pgbouncer_url,
        database_listen_url=database_url,
        queue_service_pgbouncer=True,
        queue_service_tenant_concurrency='{"fair": 2}',
    )
    async with open_runtime(
        settings, pgbouncer_url, extra_processors=[FAIR_QUEUE, PLAIN_QUEUE, work, unfair_work]
    ) as rt:
        await enqueue(rt, "tenant-a", 40, seconds=0.02)
        await enqueue(rt, "tenant-b", 40, seconds=0.02)
        async with worker(rt):

            async def drained() -> bool:
                return finished(database_url, "tenant-a") + finished(database_url, "tenant-b") == 80

            await eventually(drained, what="both tenants drain", timeout=60)
    assert most["tenant-a"] == 2 and most["tenant-b"] == 2, most


def index_pages(database_url: str, names: tuple[str, ...]) -> dict[str, int]:
    pages = {}
    with psycopg.connect(database_url) as conn:
        for name in names:
            row = conn.execute("SELECT pg_relation_size(%s::regclass)", (name,)).fetchone()
            assert row is not None
            pages[name] = int(row[0]) // 8192
    return pages


async def test_queues_that_are_not_fair_never_write_a_fair_queue_s_indexes(
    database_url: str,
) -> None:
    names = fair_index_names("fair")
    async with fair_runtime(database_url, queue_service_tenant_concurrency='{"fair": 3}') as rt:
        assert not rt.registry.queue("unfair").is_fair
        await build_fair_indexes(rt, rt.registry.queues)
        empty = index_pages(database_url, names)
        await enqueue(rt, "tenant-a", 2000, job_type="unfair.work")
        async with worker(rt, "unfair"):

            async def drained() -> bool:
                return finished(database_url, "tenant-a") == 2000

            await eventually(drained, what="the unfair queue drains", timeout=60)
        after_plain = index_pages(database_url, names)
        await enqueue(rt, "tenant-a", 2000)
        after_fair = index_pages(database_url, names)
    # A btree with no entries is its metapage alone. 2,000 inserts, claims
    # and completions in another queue left both untouched; the fair queue's
    # own inserts fill its waiting index.
    assert empty == after_plain == dict.fromkeys(names, 1)
    assert after_fair[names[0]] > 1


def test_a_fair_index_left_invalid_by_a_failed_build_is_rebuilt(database_url: str) -> None:
    waiting, active = fair_index_names("fair")
    assert ensure_fair_indexes(database_url, "fair", capped=True) == [waiting, active]
    assert ensure_fair_indexes(database_url, "fair", capped=True) == []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass", (waiting,)
        )
    assert ensure_fair_indexes(database_url, "fair", capped=True) == [waiting]
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", (waiting,)
        ).fetchone()
    assert row == (True,)


def test_index_names_are_deterministic_identifiers() -> None:
    assert fair_index_names("communication") == (
        "jobs_fair_communication",
        "jobs_fair_communication_active",
    )
    odd = fair_index_names("Tenant Queue; DROP")
    assert odd == fair_index_names("Tenant Queue; DROP")
    assert all(n.isidentifier() and len(n) < 64 for n in odd)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("queue_service_tenant_concurrency", "[1]", "QUEUE_SERVICE_TENANT_CONCURRENCY"),
        ("queue_service_tenant_concurrency", '{"fair": 0}', "QUEUE_SERVICE_TENANT_CONCURRENCY"),
        ("queue_service_fair_queues", "fair,nope", "QUEUE_SERVICE_FAIR_QUEUES"),
        ("queue_service_tenant_concurrency", '{"fiar": 2}', "did you mean 'fair'"),
    ],
)
async def test_bad_fairness_settings_are_start_up_errors(
    database_url: str, variable: str, value: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        async with fair_runtime(database_url, **{variable: value}):
            pass


def _unbounded_reads(plan: dict[str, Any]) -> list[str]:
    """test_plans' per-row re-scans, where one read is bounded otherwise: the
    walk's first step reads the queue's own partial index from its start under
    LIMIT 1 (the queue is in the predicate, not the key)."""
    found = [f for f in _per_row_rescans(plan) if not f.startswith("whole-index scan")]
    for node, parent in _nodes(plan):
        if node.get("Relation Name") != "jobs" or node["Node Type"] not in (
            "Index Scan",
            "Index Only Scan",
        ):
            continue
        if "Index Cond" not in node and (parent is None or parent["Node Type"] != "Limit"):
            found.append(f"whole-index scan of {node['Index Name']}")
    return found


@pytest.mark.parametrize("cap", [None, 3])
def test_the_fair_claim_s_generic_plan_reads_jobs_only_by_its_indexes(
    database_url: str, cap: int | None
) -> None:
    """Statistics taken while one tenant holds the whole backlog and nothing
    is active, generic plan: every read of jobs is a bounded scan of the
    queue's fair indexes or the primary key; never jobs_fetch_idx filtered
    on tenant_id, never a sequential scan, no per-row re-scan (the style of
    test_plans.py)."""
    seed_backlog(database_url, "tenant-a", 20_000)
    waiting, active = fair_index_names("fair")
    ensure_fair_indexes(database_url, "fair", capped=True)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")
        conn.execute("ANALYZE jobs")
        conn.execute(f"SET ROLE {ENGINE_ROLE}")
        conn.execute("SET plan_cache_mode = force_generic_plan")
        text, names = _prepared(_statement("job_claim_fair", "fair").as_string(conn))
        conn.execute(f"PREPARE hot AS {text}")
        values = {"types": ["fair.work"], "limit": 100, "worker": "w1", "cap": cap, "after": ""}
        args = ", ".join(["%s"] * len(names))
        with conn.transaction(force_rollback=True):
            cur = ClientCursor(conn).execute(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE hot({args})", [values[n] for n in names]
            )
            row = cur.fetchone()
    assert row is not None
    plan = row[0][0]["Plan"]
    assert plan["Actual Rows"] == (100 if cap is None else cap)
    assert _unbounded_reads(plan) == []
    indexes = {n.get("Index Name") for n, _ in _nodes(plan) if n.get("Relation Name") == "jobs"}
    assert indexes - {None} <= {waiting, active, "jobs_pkey"}, indexes
    assert waiting in indexes
