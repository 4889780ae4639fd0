"""The engine behind a real PgBouncer in transaction mode (Debian's pgbouncer, started by
the ``pgbouncer`` fixture): DATABASE_URL through it with QUEUE_SERVICE_PGBOUNCER=true,
DATABASE_LISTEN_URL direct (LISTEN and the leader's advisory lock need a session)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest

from queue_service.core.jobs import JobStatus
from queue_service.errors import IdempotencyConflictError
from queue_service.runtime.producer import SyncProducer
from queue_service.runtime.service import Runtime, open_runtime, run_until_stopped
from queue_service.store.db import ENGINE_ROLE
from tests.integration.conftest import make_settings
from tests.support.processors import LEDGER_DDL, PROCESSORS
from tests.support.processors import echo_request as echo
from tests.support.waiting import eventually


@pytest.fixture
async def bounced(pgbouncer_url: str, database_url: str) -> AsyncIterator[Runtime]:
    """A runtime whose pool goes through PgBouncer; its LISTEN URL is direct."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
    settings = make_settings(
        pgbouncer_url,
        database_listen_url=database_url,
        queue_service_pgbouncer=True,
        queue_service_leader_interval_seconds=0.5,
    ).model_copy(
        # Long: a job that starts quickly was woken by NOTIFY on the direct URL.
        update={"queue_service_poll_interval_seconds": 30.0}
    )
    async with open_runtime(settings, pgbouncer_url, extra_processors=PROCESSORS) as rt:
        yield rt


@pytest.fixture
async def serving(bounced: Runtime) -> AsyncIterator[Runtime]:
    """The service's own wiring (workers for every queue, the leader) on ``bounced``."""
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_until_stopped(bounced, stop, started=started))
    await asyncio.wait_for(started.wait(), 10)
    yield bounced
    stop.set()
    await asyncio.wait_for(task, 15)


def leave_role_behind(pgbouncer_url: str, role: str | None) -> None:
    """A client that SETs a role (or RESETs it) on whatever server connection it got."""
    with psycopg.connect(pgbouncer_url, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(f"SET ROLE {role}" if role else "RESET ROLE")


async def test_the_pool_acts_as_its_role_whatever_other_clients_left_on_the_server(
    bounced: Runtime, pgbouncer_url: str
) -> None:
    # Session-wide SET ROLE does not survive transaction pooling: another client gets the
    # server connection with the role still set, and ours may get one without it.
    for other in ("queue_service_api", None, "queue_service_api", None):
        leave_role_behind(pgbouncer_url, other)
        async with bounced.db.connection() as conn:
            cur = await conn.execute("SELECT current_user")
            assert await cur.fetchone() == (ENGINE_ROLE,)
        async with bounced.db.tenant_transaction("t1") as bound, bound.connection() as conn:
            cur = await conn.execute(
                "SELECT current_user, current_setting('queue_service.tenant_id', true)"
            )
            assert await cur.fetchone() == (ENGINE_ROLE, "t1")
    # ... and leaves nothing behind for the next client of that server connection.
    with psycopg.connect(pgbouncer_url, autocommit=True, prepare_threshold=None) as conn:
        row = conn.execute(
            "SELECT current_user = session_user,"
            " coalesce(current_setting('queue_service.tenant_id', true), '')"
        ).fetchone()
    assert row == (True, "")


async def test_enqueue_replay_conflict_and_batch_go_through_pgbouncer(bounced: Runtime) -> None:
    first = await bounced.manager.enqueue(echo("pay", idempotency_key="k1"))
    again = await bounced.manager.enqueue(echo("pay", idempotency_key="k1"))
    assert first.created and (again.job_id, again.created) == (first.job_id, False)
    with pytest.raises(IdempotencyConflictError):
        await bounced.manager.enqueue(echo("other", idempotency_key="k1"))
    done = await bounced.manager.enqueue_many([echo(i) for i in range(250)])
    assert len({d.job_id for d in done}) == 250 and all(d.created for d in done)
    claimed = await bounced.store.claim("test", ["test.echo"], 300, "w")
    assert [c.id for c in claimed] == [first.job_id, *(d.job_id for d in done)]


async def test_concurrent_identical_enqueues_make_one_job(
    bounced: Runtime, database_url: str
) -> None:
    results = await asyncio.gather(
        *(bounced.manager.enqueue(echo("pay", idempotency_key="once")) for _ in range(200))
    )
    assert len({r.job_id for r in results}) == 1 and sum(r.created for r in results) == 1
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (1,)


async def test_workers_and_leader_drain_jobs_woken_by_listen_on_the_direct_url(
    serving: Runtime,
) -> None:
    assert serving.listen_conninfo == serving.settings.database_listen_url.get_secret_value()  # type: ignore[union-attr]
    done = await serving.manager.enqueue_many([echo(i) for i in range(50)])

    async def all_completed() -> bool:
        jobs = [await serving.manager.get(d.job_id) for d in done]
        return all(j.status is JobStatus.COMPLETED for j in jobs)

    # The poll interval is 30 s: only the wake-up can make this quick.
    await eventually(all_completed, timeout=10, what="the batch drained")
    job = await serving.manager.get(done[0].job_id)
    assert job.result == {"echo": 0, "attempt": 1}


async def test_a_sync_producer_enqueues_through_pgbouncer_inside_its_transaction(
    serving: Runtime, pgbouncer_url: str
) -> None:
    producer = SyncProducer(serving.registry)
    ghosts = []

    def enqueue_then_fail(conn: psycopg.Connection[object]) -> None:
        with conn.transaction():
            conn.execute(f"SET LOCAL ROLE {ENGINE_ROLE}")  # per transaction, as the pool does
            ghosts.append(producer.enqueue(conn, echo("ghost")))
            raise RuntimeError("the business write failed")

    with psycopg.connect(pgbouncer_url, prepare_threshold=None) as conn:
        with conn.transaction():
            conn.execute(f"SET LOCAL ROLE {ENGINE_ROLE}")
            kept = producer.enqueue(conn, echo("kept"))
        with pytest.raises(RuntimeError):
            enqueue_then_fail(conn)

    async def completed() -> bool:
        return (await serving.manager.get(kept.job_id)).status is JobStatus.COMPLETED

    await eventually(completed, timeout=10, what="the produced job ran")
    counts = await serving.store.queue_counts("t1")
    assert ghosts[0].created and ghosts[0].job_id != kept.job_id
    assert sum(c.waiting for c in counts.values()) == 0
    assert (await serving.store.queue_counts())["test"].completed == 1
