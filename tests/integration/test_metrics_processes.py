"""Metrics across two real worker processes, each scraped on its own
QUEUE_SERVICE_METRICS_PORT: the gauges are the database's counts, and the
per-process counters add up to the jobs' history."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime
from tests.integration.conftest import Spawn
from tests.support.processes import ServiceProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

TOKEN = "metrics-test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def metrics_port(proc: ServiceProcess) -> int:
    """The port the worker logged for /metrics (it asked for any free one)."""

    async def probe() -> int:
        for line in proc.logs().splitlines():
            if line.startswith("{") and '"metrics listening"' in line:
                return int(json.loads(line)["port"])
        return 0

    return await eventually(probe, timeout=30, what=f"/metrics listening in pid {proc.pid}")


async def scrape(port: int) -> list[Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", headers=AUTH)
    assert response.status_code == 200, response.text
    return list(text_string_to_metric_families(response.text))


def value(families: list[Any], name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    return float(
        sum(
            s.value
            for f in families
            for s in f.samples
            if s.name == name and labels.items() <= s.labels.items()
        )
    )


def counted(families: list[Any], name: str, **labels: str) -> Counter[str]:
    """A counter's samples by job type."""
    out: Counter[str] = Counter()
    for f in families:
        for s in f.samples:
            if s.name == name and labels.items() <= s.labels.items() and s.value:
                out[s.labels["type"]] += int(s.value)
    return out


def sql(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query).fetchall()


def history(url: str, event: str) -> Counter[str]:
    """job_events rows of one kind, by the job's type (live or finished)."""
    rows = sql(
        url,
        "SELECT j.type, count(*) FROM job_events e"
        " JOIN (SELECT id, type FROM jobs UNION ALL SELECT id, type FROM finished_jobs) j"
        f" ON j.id = e.job_id WHERE e.event = '{event}' GROUP BY j.type",
    )
    return Counter({t: int(n) for t, n in rows})


async def enqueue(
    runtime: Runtime, type_: str, data: dict[str, Any], n: int, **kw: Any
) -> list[UUID]:
    return [
        (await runtime.manager.enqueue(EnqueueRequest(type=type_, data=data, **kw))).job_id
        for _ in range(n)
    ]


async def test_gauges_equal_the_database_and_counters_of_two_workers_add_up_to_history(
    runtime: Runtime, spawn: Spawn, database_url: str
) -> None:
    env = {"QUEUE_SERVICE_METRICS_PORT": "0", "METRICS_TOKEN": TOKEN}
    workers = [
        spawn("worker", "--queues", "test", QUEUE_SERVICE_WORKER_ID=f"w{i}", **env) for i in (1, 2)
    ]
    ports = [await metrics_port(w) for w in workers]
    async with httpx.AsyncClient() as client:
        refused = await client.get(f"http://127.0.0.1:{ports[0]}/metrics")
    assert refused.status_code == 401

    # t2's jobs wait behind a pause: the waiting gauge and the oldest age.
    await runtime.store.pause_queue("test", "t2", "metrics test")
    await enqueue(runtime, "test.echo", {"value": "held"}, 3, tenant_id="t2")
    t1 = {"tenant_id": "t1"}
    await enqueue(runtime, "test.echo", {"value": 1}, 12, **t1)
    await enqueue(runtime, "test.fail", {"mode": "retryable"}, 3, **t1)  # 2 retries, DLQ
    await enqueue(runtime, "test.fail", {"mode": "permanent"}, 2, **t1)  # DLQ at once
    await enqueue(runtime, "test.fail", {"mode": "flaky", "succeed_on": 2}, 2, **t1)
    await enqueue(runtime, "test.snooze", {"times": 2}, 2, **t1)
    await enqueue(runtime, "test.sleep", {"seconds": 25}, 2, **t1)  # still active at the end
    later = await enqueue(runtime, "test.echo", {"value": 2}, 3, delay_ms=600_000, **t1)
    await runtime.manager.cancel(later[0], "t1", "metrics test")

    async def settled() -> bool:
        (left,) = sql(
            database_url,
            "SELECT count(*) FROM jobs WHERE tenant_id = 't1' AND type <> 'test.sleep'"
            " AND run_at < now() + interval '1 minute'",
        )[0]
        (active,) = sql(database_url, "SELECT count(*) FROM jobs WHERE status = 'active'")[0]
        return bool(left == 0 and active == 2)

    await eventually(settled, timeout=30, what="every finishable job finished")
    scrapes = [await scrape(p) for p in ports]

    due = "status = 'waiting' AND run_at <= now()"
    (waiting, delayed, active, dead, oldest) = sql(
        database_url,
        f"SELECT count(*) FILTER (WHERE {due}),"
        " count(*) FILTER (WHERE status = 'waiting' AND run_at > now()),"
        " count(*) FILTER (WHERE status = 'active'),"
        " (SELECT count(*) FROM dead_letter_jobs WHERE replayed_job_id IS NULL),"
        f" extract(epoch FROM now() - min(run_at) FILTER (WHERE {due}))::float"
        " FROM jobs WHERE queue = 'test'",
    )[0]
    assert (waiting, delayed, active, dead) == (3, 2, 2, 5)
    for families in scrapes:  # every process reports the same database truth
        assert value(families, "queue_size", queue="test", status="waiting") == waiting
        assert value(families, "queue_size", queue="test", status="delayed") == delayed
        assert value(families, "queue_active_jobs", queue="test") == active
        assert value(families, "queue_dead_letter_jobs", queue="test") == dead
        assert value(families, "oldest_job_age_seconds", queue="test") == pytest.approx(
            oldest, abs=1.5
        )

    def total(name: str, **labels: str) -> Counter[str]:
        return sum((counted(f, name, queue="test", **labels) for f in scrapes), Counter())

    assert total("queue_jobs_processed_total") == history(database_url, "completed")
    assert total("queue_jobs_failed_total", status="retry") == history(
        database_url, "retry_scheduled"
    )
    assert total("queue_jobs_failed_total", status="dead_lettered") == history(
        database_url, "failed"
    )
    assert total("queue_jobs_snoozed_total") == history(database_url, "snoozed")
    assert total("queue_job_processing_duration_seconds_count") == (
        history(database_url, "completed")
        + history(database_url, "retry_scheduled")
        + history(database_url, "failed")
    )
    # The mix really was mixed, and both processes took part.
    assert history(database_url, "snoozed")["test.snooze"] == 4
    assert history(database_url, "retry_scheduled")["test.fail"] == 3 * 2 + 2
    assert all(value(f, "queue_jobs_processed_total") > 0 for f in scrapes)
    # The two sleeping jobs hold two of the ten slots the two processes have.
    assert sum(value(f, "queue_worker_slots_in_use", queue="test") for f in scrapes) == 2
    assert sum(value(f, "queue_worker_slots_max", queue="test") for f in scrapes) == 10
