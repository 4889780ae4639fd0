"""The insert lane (store/lane.py): single-job inserts on dedicated asyncpg
connections write exactly what the pool path writes, act as the engine's
role, never queue behind each other, and recover from a lost connection
with the same transient error the rest of the engine retries on."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from queue_service.core.ids import uuid7
from queue_service.core.jobs import JobStatus
from queue_service.runtime.service import Runtime, open_runtime
from queue_service.store import lane as lane_module
from queue_service.store.db import API_ROLE
from queue_service.store.enqueue_plan import keyless_params
from queue_service.store.errors import is_transient
from queue_service.store.insert import copy_row
from queue_service.store.lane import InsertLane, to_dollar
from queue_service.store.queries import Q
from tests.integration.conftest import make_settings
from tests.support.processors import PROCESSORS
from tests.support.processors import echo_request as echo


def lane_backends(database_url: str) -> list[int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE '%% lane'"
        ).fetchall()
    return [r[0] for r in rows]


def test_placeholders_become_numbered_and_a_repeated_name_keeps_its_number() -> None:
    sql, names = to_dollar("SELECT %(a)s, %(b)s::int, %(a)s, '100%%'")
    assert sql == "SELECT $1, $2::int, $1, '100%'"
    assert names == ["a", "b"]


async def test_a_single_enqueue_takes_the_lane_and_writes_what_the_pool_writes(
    runtime: Runtime, database_url: str
) -> None:
    assert runtime.db.lane is not None
    fields = {
        "created_by": "u\t1",
        "request_id": "req-9",
        "priority": 2,
        "max_attempts": 7,
        "trace_context": {"traceparent": "00-abc-def-01"},
    }
    laned = await runtime.manager.enqueue(echo({"k": ["\\", "é"]}, **fields))
    assert runtime.db.lane.connections == 1 and len(lane_backends(database_url)) == 1

    async with open_runtime(
        make_settings(database_url, queue_service_insert_lane=0),
        database_url,
        extra_processors=PROCESSORS,
    ) as pooled_rt:
        assert pooled_rt.db.lane is None
        pooled = await pooled_rt.manager.enqueue(echo({"k": ["\\", "é"]}, **fields))

    a, b = [await runtime.manager.get(d.job_id) for d in (laned, pooled)]
    assert a.status is b.status is JobStatus.WAITING
    for name in ("tenant_id", "queue", "type", "priority", "data", "max_attempts", "created_by"):
        assert getattr(a, name) == getattr(b, name), name
    assert (a.request_id, b.request_id) == ("req-9", "req-9")
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT trace_context, max_stalled, lease_seconds FROM jobs WHERE id = ANY(%s)",
            ([a.id, b.id],),
        ).fetchall()
    assert rows[0] == rows[1] and rows[0][0] == {"traceparent": "00-abc-def-01"}


async def test_delays_and_run_at_through_the_lane_use_the_database_clock(
    runtime: Runtime,
) -> None:
    later = await runtime.manager.enqueue(echo("later", delay_ms=60_000))
    at = datetime.now(UTC) + timedelta(hours=1)
    fixed = await runtime.manager.enqueue(echo("fixed", run_at=at))
    job = await runtime.manager.get(later.job_id)
    assert job.status is JobStatus.DELAYED
    assert timedelta(seconds=59) < job.run_at - job.created_at <= timedelta(seconds=60)
    assert (await runtime.manager.get(fixed.job_id)).run_at == at


async def test_concurrent_enqueues_overflow_to_the_pool_and_all_go_in(
    runtime: Runtime, database_url: str
) -> None:
    lane = runtime.db.lane
    assert lane is not None
    done = await asyncio.gather(*(runtime.manager.enqueue(echo(i)) for i in range(60)))
    assert len({d.job_id for d in done}) == 60
    assert lane.connections <= lane.size
    assert len(lane_backends(database_url)) <= lane.size
    assert (await runtime.store.queue_counts("t1"))["test"].waiting == 60


async def test_a_killed_idle_lane_connection_is_replaced_before_it_is_used(
    runtime: Runtime, database_url: str
) -> None:
    await runtime.manager.enqueue(echo("first"))
    (pid,) = lane_backends(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    await asyncio.sleep(0.2)  # the loop sees the socket close
    after = await runtime.manager.enqueue(echo("after"))
    assert (await runtime.manager.get(after.job_id)).status is JobStatus.WAITING
    assert (await runtime.store.queue_counts("t1"))["test"].waiting == 2
    assert len(lane_backends(database_url)) == 1 and lane_backends(database_url) != [pid]


async def test_a_lane_connection_idle_too_long_is_replaced(
    runtime: Runtime, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await runtime.manager.enqueue(echo("first"))
    (pid,) = lane_backends(database_url)
    monkeypatch.setattr(lane_module, "MAX_IDLE_SECONDS", 0.0)
    await runtime.manager.enqueue(echo("second"))
    for _ in range(50):
        if lane_backends(database_url) != [pid]:
            break
        await asyncio.sleep(0.05)
    assert len(lane_backends(database_url)) == 1 and lane_backends(database_url) != [pid]
    assert (await runtime.store.queue_counts("t1"))["test"].waiting == 2


async def test_a_lane_that_cannot_connect_stands_aside_for_the_pool(runtime: Runtime) -> None:
    job = runtime.manager.build(echo("x"))
    params = keyless_params(job, uuid7())
    nowhere = InsertLane("postgresql://postgres@127.0.0.1:1/none", "queue_service_engine")
    assert not await nowhere.try_execute(Q["job_insert_keyless"], params)
    started = time.monotonic()
    assert not await nowhere.try_execute(Q["job_insert_keyless"], params)  # resting
    assert time.monotonic() - started < 0.05 and nowhere.connections == 0
    assert not InsertLane("host=127.0.0.1 dbname=x", "queue_service_engine").usable


def test_a_lost_connection_is_reported_as_the_transient_error_the_engine_retries() -> None:
    import asyncpg

    lost = lane_module._as_psycopg(asyncpg.ConnectionDoesNotExistError("closed mid-statement"))
    assert isinstance(lost, psycopg.OperationalError) and is_transient(lost)
    assert is_transient(lane_module._as_psycopg(ConnectionResetError()))
    refused = asyncpg.UniqueViolationError("duplicate")
    assert lane_module._as_psycopg(refused) is refused


async def test_the_lane_acts_as_its_role_so_row_level_security_applies(
    runtime: Runtime, database_url: str
) -> None:
    job = runtime.manager.build(echo("as the API role, with no tenant set"))
    lane = InsertLane(database_url, API_ROLE, size=1, application_name="test lane")
    try:
        with pytest.raises(Exception, match="row-level security") as refused:
            await lane.try_execute(Q["job_insert_keyless"], keyless_params(job, uuid7()))
        assert getattr(refused.value, "sqlstate", None) == "42501"
        assert lane.connections == 0  # a failed connection is not kept
    finally:
        await lane.close()
    assert await runtime.store.queue_counts() == {}


async def test_a_closed_lane_declines_and_the_runtime_closes_its_connections(
    database_url: str,
) -> None:
    async with open_runtime(
        make_settings(database_url), database_url, extra_processors=PROCESSORS
    ) as rt:
        await rt.manager.enqueue(echo(1))
        assert len(lane_backends(database_url)) == 1
        lane = rt.db.lane
    assert lane is not None
    assert not await lane.try_execute(Q["job_insert_keyless"], {})
    for _ in range(50):  # the server notices the closed sockets promptly
        if not lane_backends(database_url):
            break
        await asyncio.sleep(0.05)
    assert lane_backends(database_url) == []


async def test_behind_pgbouncer_there_is_no_lane(database_url: str) -> None:
    async with open_runtime(
        make_settings(database_url, queue_service_pgbouncer=True),
        database_url,
        extra_processors=PROCESSORS,
    ) as rt:
        assert rt.db.lane is None
        done = await rt.manager.enqueue(echo("through the pool"))
        assert (await rt.manager.get(done.job_id)).status is JobStatus.WAITING


async def test_batches_take_the_lane_and_overflow_to_the_pool(
    runtime: Runtime, database_url: str
) -> None:
    lane = runtime.db.lane
    assert lane is not None
    batches = await asyncio.gather(
        *(runtime.manager.enqueue_many([echo(f"{b}-{i}") for i in range(100)]) for b in range(6))
    )
    assert len({d.job_id for batch in batches for d in batch}) == 600
    assert lane.connections <= lane.size and len(lane_backends(database_url)) <= lane.size
    assert (await runtime.store.queue_counts("t1"))["test"].waiting == 600


async def test_a_batch_that_fails_on_the_lane_writes_nothing(
    runtime: Runtime, database_url: str
) -> None:
    good, bad = (runtime.manager.build(echo(v)) for v in ("good", "bad"))
    bad.priority = 500  # past the table's CHECK: the COPY's move fails
    lane = InsertLane(database_url, "queue_service_engine", size=1)
    try:
        with pytest.raises(Exception, match="check constraint") as failed:
            await lane.try_copy(
                Q["jobs_staging_prepare"],
                Q["job_copy_immediate"],
                [copy_row(uuid7(), good), copy_row(uuid7(), bad)],
                Q["jobs_from_staging"],
                {"queues": ["test"]},
            )
        assert getattr(failed.value, "sqlstate", None) == "23514"
        assert lane.connections == 0
    finally:
        await lane.close()
    assert await runtime.store.queue_counts() == {}
