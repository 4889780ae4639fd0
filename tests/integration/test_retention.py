"""Retention: the dry run counts what the purge then removes, per category
(metric snapshots after 30 days and resolved alerts after 7 included); the
purge goes in short batches while a worker drains, and skips rows another
transaction holds instead of waiting for them."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from queue_service.core.catalog import SYSTEM_TENANT
from queue_service.core.jobs import EnqueueRequest, JobStatus
from queue_service.processors.retention import Category, categories, purge, purge_all
from queue_service.runtime.service import Runtime
from tests.integration.conftest import WorkerFactory
from tests.support.waiting import eventually

SEEDED = 2000  # a quarter each: payment, webhook, email, analytics; all 400 days old


def seed_metrics_and_alerts(database_url: str) -> None:
    """Two snapshots and two resolved firings, one of each past its window."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for days in (31, 29):
            conn.execute(
                "INSERT INTO queue_metrics (at, tenant_id, queue, waiting, delayed, active,"
                " completed, failed, cancelled) VALUES"
                " (date_trunc('minute', now() - make_interval(days => %s)), 't', 'money',"
                " 0, 0, 0, 0, 0, 0)",
                (days,),
            )
        for days in (8, 6):
            conn.execute(
                "INSERT INTO alert_history (id, rule, fire_key, severity, fired_at, value,"
                " threshold, message, resolved_at) VALUES (gen_random_uuid(), 'r', 'r',"
                " 'warning', now() - interval '9 days', 1, 1, 'm',"
                " now() - make_interval(days => %s))",
                (days,),
            )


def by_name(found: list[Category]) -> dict[str, Category]:
    return {c.name: c for c in found}


async def test_the_dry_run_counts_exactly_what_the_purge_then_removes(
    runtime: Runtime, database_url: str
) -> None:
    await runtime.store.bench_seed_finished(SEEDED, 400)
    seed_metrics_and_alerts(database_url)
    found = categories(runtime.store, runtime.settings)
    counted = {c.name: await c.count(1_000_000) for c in found}
    assert counted["payment+refund+order"] == SEEDED // 4
    assert counted["webhook"] == SEEDED // 4
    assert counted["email+sms"] == SEEDED // 4
    assert counted["other"] == SEEDED // 4
    assert (counted["metric_snapshots"], counted["alerts"]) == (1, 1)
    # Capped: a count never reads past its cap.
    assert await by_name(found)["other"].count(10) == 10
    removed = await purge_all(found)
    assert removed == counted
    assert {c.name: await c.count(1_000_000) for c in found} == dict.fromkeys(counted, 0)
    with psycopg.connect(database_url) as conn:
        archived = conn.execute("SELECT count(*) FROM job_archive").fetchone()
        kept = conn.execute("SELECT count(*) FROM queue_metrics").fetchone()
    assert archived == (SEEDED // 2,) and kept == (1,)


async def test_cleanup_run_purges_old_metric_snapshots_and_resolved_alerts(
    runtime: Runtime, run_worker: WorkerFactory, database_url: str
) -> None:
    seed_metrics_and_alerts(database_url)
    done = await runtime.manager.enqueue(EnqueueRequest("cleanup.run", {}, SYSTEM_TENANT))
    run_worker(("background",))

    async def finished() -> bool:
        return (await runtime.manager.get(done.job_id)).status is JobStatus.COMPLETED

    await eventually(finished, what="cleanup.run")
    report = (await runtime.manager.get(done.job_id)).result
    assert (report["metric_snapshots"], report["alerts"]) == (1, 1)


async def test_purging_goes_in_short_batches_while_a_worker_drains(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    await runtime.store.bench_seed_finished(SEEDED, 400)
    requests = [EnqueueRequest("test.echo", {"value": i}, "t1") for i in range(300)]
    ids = [e.job_id for e in await runtime.manager.enqueue_many(requests)]
    batches: list[int] = []
    run_worker()
    found = categories(runtime.store, runtime.settings)
    removed = {
        c.name: await purge(c, batch=100, progress=lambda _, n: batches.append(n)) for c in found
    }

    async def drained() -> bool:
        jobs = [await runtime.manager.get(i) for i in ids]
        return all(j.status is JobStatus.COMPLETED for j in jobs)

    await eventually(drained, what="every job drained beside the purge")
    assert sum(removed.values()) == SEEDED
    assert max(batches) == 100 and len([n for n in batches if n]) == SEEDED // 100


@pytest.mark.parametrize("table", ["finished_jobs", "dead_letter_jobs"])
async def test_the_purge_skips_a_row_another_transaction_holds_instead_of_waiting(
    runtime: Runtime, database_url: str, table: str
) -> None:
    await runtime.store.bench_seed_finished(10, 400)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO dead_letter_jobs (id, tenant_id, original_job_id, queue, type, data,"
            " attempts, failed_at) SELECT gen_random_uuid(), 't1', gen_random_uuid(), 'q',"
            " 't.x', '{}', 1, now() - interval '200 days' FROM generate_series(1, 10)"
        )
    found = by_name(categories(runtime.store, runtime.settings))
    name = "other" if table == "finished_jobs" else "dead_letters"
    with psycopg.connect(database_url) as holder:
        # A retry or replay in flight holds its row until it commits.
        lock = {
            "finished_jobs": "SELECT id FROM finished_jobs WHERE type = 'analytics.track'"
            " ORDER BY id LIMIT 1 FOR UPDATE",
            "dead_letter_jobs": "SELECT id FROM dead_letter_jobs ORDER BY id LIMIT 1 FOR UPDATE",
        }[table]
        held = holder.execute(lock).fetchone()
        removed = await asyncio.wait_for(purge(found[name]), timeout=10)
        left = await found[name].count(100)
        holder.rollback()
    assert held is not None
    assert left == 1 and removed == (2 if table == "finished_jobs" else 10) - 1
    assert await purge(found[name]) == 1
