"""Failures: retries with backoff, permanent errors, timeouts, the DLQ and
its replay; cancelling an active job; heartbeats keeping long jobs alive."""

from __future__ import annotations

import asyncio
from uuid import UUID

import psycopg
import pytest

from queue_service.core.jobs import Job, JobStatus
from queue_service.errors import InvalidStateError
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime
from tests.integration.conftest import WorkerFactory
from tests.support.waiting import eventually


def job(job_type: str, **data: object) -> EnqueueRequest:
    return EnqueueRequest(type=job_type, data=data, tenant_id="t1", created_by="u1")


async def finished(runtime: Runtime, job_id: UUID, status: JobStatus) -> None:
    async def probe() -> bool:
        return (await runtime.manager.get(job_id)).status is status

    await eventually(probe, what=f"job {job_id} {status.value}")


async def run_to(
    runtime: Runtime, run_worker: WorkerFactory, request: EnqueueRequest, status: JobStatus
) -> Job:
    """Enqueue ``request``, start a worker, and return the job once it is ``status``."""
    done = await runtime.manager.enqueue(request)
    run_worker()
    await finished(runtime, done.job_id, status)
    return await runtime.manager.get(done.job_id)


async def test_a_retryable_error_is_retried_until_attempts_run_out_then_dead_lettered(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    failed = await run_to(runtime, run_worker, job("test.fail", mode="retryable"), JobStatus.FAILED)
    assert failed.attempts == 3
    assert "upstream 503 on attempt 3" in (failed.last_error or "")
    events = await runtime.store.job_events(failed.id)
    assert [(e.event, e.attempt) for e in events] == [
        ("retry_scheduled", 1),
        ("retry_scheduled", 2),
        ("failed", 3),
    ]
    [dead] = await runtime.store.list_dead_letters("t1", 10)
    assert (dead.original_job_id, dead.queue, dead.type, dead.attempts) == (
        failed.id,
        "test",
        "test.fail",
        3,
    )
    assert dead.data == {"mode": "retryable"} and dead.created_by == "u1"
    assert "upstream 503" in (dead.error or "")


async def test_a_flaky_job_succeeds_on_a_later_attempt(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    request = job("test.fail", mode="flaky", succeed_on=2)
    ran = await run_to(runtime, run_worker, request, JobStatus.COMPLETED)
    assert ran.result == {"succeeded_on": 2}


async def test_a_retry_waits_its_backoff_on_the_database_clock(
    runtime: Runtime, database_url: str
) -> None:
    done = await runtime.manager.enqueue(job("test.fail", mode="retryable"))
    [claimed] = await runtime.store.claim("test", ["test.fail"], 1, "w1")
    assert await runtime.store.retry_later(claimed.id, claimed.lease_token, 30.0, "boom", "w1")
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT extract(epoch FROM run_at - now()) FROM jobs").fetchone()
    assert row is not None and 29 < float(row[0]) <= 30
    assert (await runtime.manager.get(done.job_id)).status is JobStatus.DELAYED
    assert await runtime.store.claim("test", ["test.fail"], 1, "w1") == []


async def test_a_permanent_error_skips_the_remaining_attempts(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    failed = await run_to(runtime, run_worker, job("test.fail", mode="permanent"), JobStatus.FAILED)
    assert failed.attempts == 1
    assert "permanent (card_declined)" in (failed.last_error or "")
    assert len(await runtime.store.list_dead_letters("t1", 10)) == 1


async def test_a_handler_past_its_timeout_is_cancelled_and_counts_as_a_failed_attempt(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    failed = await run_to(runtime, run_worker, job("test.timeout", seconds=30), JobStatus.FAILED)
    assert failed.attempts == 2 and "timed out after 0.3 s" in (failed.last_error or "")


async def test_a_job_longer_than_its_lease_is_kept_alive_by_heartbeats(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    # test.sleep has a 2 s lease; the leader's rescuer runs all the while.
    from queue_service.runtime.duties import leader_duties
    from queue_service.runtime.leader import Leader
    from queue_service.store.session import LeaderSession

    leader = Leader(LeaderSession(runtime.conninfo), leader_duties(runtime.manager), interval=0.2)
    leader_task = asyncio.create_task(leader.run())
    try:
        done = await runtime.manager.enqueue(job("test.sleep", seconds=4.5))
        run_worker()
        await eventually(
            lambda: _status_is(runtime, done.job_id, JobStatus.COMPLETED),
            timeout=15,
            what="the long job",
        )
    finally:
        leader_task.cancel()
        await asyncio.gather(leader_task, return_exceptions=True)
    assert (await runtime.manager.get(done.job_id)).attempts == 1
    assert [e.event for e in await runtime.store.job_events(done.job_id)] == ["completed"]


async def _status_is(runtime: Runtime, job_id: UUID, status: JobStatus) -> bool:
    return (await runtime.manager.get(job_id)).status is status


async def test_cancelling_an_active_job_stops_its_handler(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    done = await runtime.manager.enqueue(job("test.sleep", seconds=30))
    run_worker()
    await eventually(lambda: _status_is(runtime, done.job_id, JobStatus.ACTIVE), what="active")
    assert await runtime.manager.cancel(done.job_id, "t1", "refund issued") == "cancel_requested"
    await finished(runtime, done.job_id, JobStatus.CANCELLED)
    cancelled = await runtime.manager.get(done.job_id)
    assert cancelled.last_error == "cancelled on request"
    assert [e.event for e in await runtime.store.job_events(done.job_id)] == [
        "cancel_requested",
        "cancelled",
    ]
    assert await runtime.store.list_dead_letters("t1", 10) == []


async def test_a_dead_letter_replays_once_even_when_asked_concurrently(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    ran = await run_to(runtime, run_worker, job("test.fail", mode="permanent"), JobStatus.FAILED)
    [dead] = await runtime.store.list_dead_letters("t1", 10)

    outcomes = await asyncio.gather(
        *(runtime.manager.replay_dead_letter(dead.id, "t1", "admin") for _ in range(10)),
        return_exceptions=True,
    )
    new_ids = [o for o in outcomes if isinstance(o, UUID)]
    assert len(new_ids) == 1
    assert all(isinstance(o, InvalidStateError) for o in outcomes if not isinstance(o, UUID))
    replayed = await runtime.manager.get(new_ids[0])
    assert replayed.replay_of == ran.id and replayed.created_by == "admin"
    entry = await runtime.store.get_dead_letter(dead.id)
    assert entry is not None and entry.replayed_job_id == new_ids[0]


async def test_dead_letters_can_be_deleted_and_are_tenant_scoped(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    await run_to(runtime, run_worker, job("test.fail", mode="permanent"), JobStatus.FAILED)
    [dead] = await runtime.store.list_dead_letters("t1", 10)
    assert await runtime.store.list_dead_letters("t2", 10) == []
    assert not await runtime.store.delete_dead_letter(dead.id, "t2")
    with pytest.raises(Exception, match="no dead letter"):
        await runtime.manager.replay_dead_letter(dead.id, "t2", "admin")
    assert await runtime.store.delete_dead_letter(dead.id, "t1")
    assert await runtime.store.list_dead_letters("t1", 10) == []


async def test_a_stale_lease_token_cannot_finish_a_job(runtime: Runtime) -> None:
    done = await runtime.manager.enqueue(job("test.echo", value=1))
    [first] = await runtime.store.claim("test", ["test.echo"], 1, "w1")
    assert await runtime.store.release_many([(first.id, first.lease_token)], "w1")
    [second] = await runtime.store.claim("test", ["test.echo"], 1, "w2")
    assert second.lease_token != first.lease_token
    assert await runtime.store.complete_many([(first.id, first.lease_token, "stale")]) == set()
    assert not await runtime.store.retry_later(first.id, first.lease_token, 0, "x", "w1")
    assert await runtime.store.finish_many([(first.id, first.lease_token, "x")], "failed") == set()
    assert await runtime.store.complete_many([(second.id, second.lease_token, "ok")]) == {
        done.job_id
    }
    assert (await runtime.manager.get(done.job_id)).result == "ok"


async def test_a_jobs_log_lines_carry_the_request_id_that_created_it(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    from structlog.testing import capture_logs

    request = job("test.fail", mode="permanent")
    request.request_id = "req-42"
    with capture_logs() as logs:
        done = await runtime.manager.enqueue(request)
        run_worker()
        await finished(runtime, done.job_id, JobStatus.FAILED)
    failed = [e for e in logs if e.get("job_id") == str(done.job_id)]
    assert failed, logs
    assert {e.get("request_id") for e in failed} == {"req-42"}
    assert {e.get("tenant_id") for e in failed} == {"t1"}
