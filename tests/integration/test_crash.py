"""Faults on real worker processes: SIGKILL mid-job, a frozen worker woken
after its job was rescued (fencing), SIGTERM drains and releases, and a
handler that crashes.

Every process is `python -m queue_service.cli ...` (tests.support.processes)
with the test job types; `test.sleep` has a 2 s lease and writes a
test_ledger row in the transaction that completes it, so exactly-once shows
as exactly one ledger row.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest

from queue_service.core.jobs import JobStatus
from queue_service.errors import LeaseLostError
from queue_service.processors.context import JobContext
from queue_service.runtime.lending import EngineSession
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime
from tests.integration.conftest import Spawn
from tests.support.processes import ServiceProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


async def exit_code(proc: ServiceProcess, timeout: float = 10.0) -> int:
    return await asyncio.to_thread(proc.wait, timeout)


async def logged(proc: ServiceProcess, text: str, timeout: float = 10.0) -> None:
    async def probe() -> bool:
        return text in proc.logs()

    await eventually(probe, timeout=timeout, what=f"{text!r} in the logs of pid {proc.pid}")


def has_status(runtime: Runtime, job_id: UUID, status: JobStatus) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return (await runtime.manager.get(job_id)).status is status

    return probe


async def ledger(runtime: Runtime, job_id: UUID) -> list[tuple[Any, ...]]:
    """The (attempt, worker_id) of every committed effect of a job."""
    async with runtime.db.connection() as conn:
        cur = await conn.execute(
            "SELECT attempt, worker_id FROM test_ledger WHERE job_id = %(id)s ORDER BY at",
            {"id": job_id},
        )
        return await cur.fetchall()


async def history(runtime: Runtime, job_id: UUID) -> list[tuple[str, int]]:
    return [(e.event, e.attempt) for e in await runtime.store.job_events(job_id)]


async def enqueue_sleep(runtime: Runtime, seconds: float) -> UUID:
    done = await runtime.manager.enqueue(
        EnqueueRequest(type="test.sleep", data={"seconds": seconds}, tenant_id="t1")
    )
    return done.job_id


async def test_a_job_on_a_killed_worker_is_rescued_and_completed_exactly_once(
    runtime: Runtime, spawn: Spawn
) -> None:
    job_id = await enqueue_sleep(runtime, 3)
    doomed = spawn("worker", "--queues", "test", QUEUE_SERVICE_WORKER_ID="doomed")
    await eventually(has_status(runtime, job_id, JobStatus.ACTIVE), what="the job to start")

    doomed.signal(signal.SIGKILL)
    assert await exit_code(doomed) == -signal.SIGKILL
    spawn("serve", QUEUE_SERVICE_WORKER_ID="survivor")
    await eventually(
        has_status(runtime, job_id, JobStatus.COMPLETED), timeout=15, what="the rescued job"
    )

    job = await runtime.manager.get(job_id)
    assert job.attempts == 2
    assert await ledger(runtime, job_id) == [(2, "survivor")]
    assert await history(runtime, job_id) == [("rescued", 1), ("completed", 2)]
    events = await runtime.store.job_events(job_id)
    assert events[0].error is not None and "doomed" in events[0].error
    assert events[1].worker_id == "survivor"


@pytest.mark.parametrize("wake", ["after_the_rescuer_completed", "while_the_rescuer_runs"])
async def test_a_frozen_worker_woken_after_its_job_was_rescued_cannot_complete_it_again(
    runtime: Runtime, spawn: Spawn, wake: str
) -> None:
    job_id = await enqueue_sleep(runtime, 2.5)
    frozen = spawn("worker", "--queues", "test", QUEUE_SERVICE_WORKER_ID="frozen")
    await eventually(has_status(runtime, job_id, JobStatus.ACTIVE), what="the job to start")
    frozen.signal(signal.SIGSTOP)  # mid-handler: no heartbeats, no completion

    spawn("serve", QUEUE_SERVICE_WORKER_ID="rescuer")
    if wake == "while_the_rescuer_runs":

        async def rescuer_runs() -> bool:
            job = await runtime.manager.get(job_id)
            return job.status is JobStatus.ACTIVE and job.attempts == 2

        await eventually(rescuer_runs, timeout=15, what="the rescuer to take the job")
    else:
        await eventually(
            has_status(runtime, job_id, JobStatus.COMPLETED), timeout=15, what="the rescuer"
        )
        assert await ledger(runtime, job_id) == [(2, "rescuer")]

    # The frozen attempt wakes past its sleep. Its heartbeat (due first) finds
    # the lease gone and interrupts the handler, else the handler's completing
    # transaction fails the lease-token fence (next test): no second effect.
    frozen.signal(signal.SIGCONT)
    await logged(frozen, "lease lost")
    await eventually(
        has_status(runtime, job_id, JobStatus.COMPLETED), timeout=10, what="the rescuer"
    )

    assert await ledger(runtime, job_id) == [(2, "rescuer")]
    assert (await runtime.manager.get(job_id)).attempts == 2
    assert await history(runtime, job_id) == [("rescued", 1), ("completed", 2)]
    assert (await runtime.store.job_events(job_id))[-1].worker_id == "rescuer"
    assert frozen.proc.poll() is None, "losing a lease must not kill the worker"

    frozen.signal(signal.SIGTERM)
    assert await exit_code(frozen) == 0


async def test_a_stale_attempt_that_reaches_its_completing_transaction_is_fenced_off(
    runtime: Runtime,
) -> None:
    """The other path of the test above, made deterministic in-process: with a
    frozen process the woken heartbeat finds the lease gone and interrupts the
    handler first, so the fence in the completing transaction itself is only
    reached in a narrow race there. Here the stale attempt's handler runs to
    its `ctx.transaction()` after the rescue and a new claim."""
    job_id = await enqueue_sleep(runtime, 0)
    [stale] = await runtime.store.claim("test", ["test.sleep"], 1, "stale")
    async with runtime.db.connection() as conn:  # its heartbeats stopped long ago
        await conn.execute(
            "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %(id)s",
            {"id": job_id},
        )
    assert (await runtime.store.rescue_expired()).rescued == [job_id]
    [fresh] = await runtime.store.claim("test", ["test.sleep"], 1, "fresh")
    assert fresh.id == job_id and fresh.lease_token != stale.lease_token

    proc = runtime.registry.processor("test.sleep")
    session = EngineSession(runtime.manager)
    with pytest.raises(LeaseLostError):
        await proc.handler(
            JobContext(stale, "stale", session, runtime.deps), proc.parse(stale.data)
        )
    assert await ledger(runtime, job_id) == []
    assert (await runtime.manager.get(job_id)).status is JobStatus.ACTIVE

    await proc.handler(JobContext(fresh, "fresh", session, runtime.deps), proc.parse(fresh.data))
    assert await ledger(runtime, job_id) == [(2, "fresh")]
    assert await history(runtime, job_id) == [("rescued", 1), ("completed", 2)]
    with pytest.raises(LeaseLostError):  # and once the job is finished
        await proc.handler(
            JobContext(stale, "stale", session, runtime.deps), proc.parse(stale.data)
        )
    assert await ledger(runtime, job_id) == [(2, "fresh")]


async def db_now(runtime: Runtime) -> datetime:
    return await runtime.store.db_now()


async def running_sleep(
    runtime: Runtime, spawn: Spawn, seconds: float, *, grace: str, worker_id: str
) -> tuple[ServiceProcess, UUID]:
    """A worker process (this shutdown grace) running a test.sleep job of ``seconds``."""
    worker = spawn(
        "worker",
        "--queues",
        "test",
        QUEUE_SERVICE_SHUTDOWN_GRACE_SECONDS=grace,
        QUEUE_SERVICE_WORKER_ID=worker_id,
    )
    job_id = await enqueue_sleep(runtime, seconds)
    await eventually(has_status(runtime, job_id, JobStatus.ACTIVE), what="the job to start")
    return worker, job_id


async def test_sigterm_lets_a_running_job_finish_within_the_grace_period(
    runtime: Runtime, spawn: Spawn
) -> None:
    worker, job_id = await running_sleep(runtime, spawn, 0.5, grace="5", worker_id="draining")

    before_signal = await db_now(runtime)
    worker.signal(signal.SIGTERM)
    assert await exit_code(worker) == 0

    job = await runtime.manager.get(job_id)
    assert job.status is JobStatus.COMPLETED
    assert job.finished_at is not None and job.finished_at > before_signal
    assert await ledger(runtime, job_id) == [(1, "draining")]
    assert await history(runtime, job_id) == [("completed", 1)]
    logs = worker.logs()
    assert logs.index("signal received") < logs.index("worker stopped")


async def test_sigterm_releases_a_job_still_running_after_the_grace_period(
    runtime: Runtime, spawn: Spawn
) -> None:
    worker, job_id = await running_sleep(runtime, spawn, 20, grace="1", worker_id="impatient")

    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert await exit_code(worker) == 0
    took = time.monotonic() - signalled

    assert 1.0 <= took < 5.0, f"exit {took:.2f} s after SIGTERM with a 1 s grace period"
    # Given back at once, not left active until its lease runs out.
    job = await runtime.manager.get(job_id)
    assert (job.status, job.attempts) == (JobStatus.WAITING, 0)
    assert await ledger(runtime, job_id) == []
    events = await runtime.store.job_events(job_id)
    assert [(e.event, e.attempt, e.worker_id) for e in events] == [("released", 1, "impatient")]
    assert "grace period over" in worker.logs()


async def test_a_crashing_handler_does_not_stop_the_worker_process(
    runtime: Runtime, spawn: Spawn
) -> None:
    worker = spawn("worker", "--queues", "test")
    crash = await runtime.manager.enqueue(
        EnqueueRequest(type="test.fail", data={"mode": "crash"}, tenant_id="t1")
    )
    before = await runtime.manager.enqueue_many(
        [EnqueueRequest(type="test.echo", data={"value": i}, tenant_id="t1") for i in range(5)]
    )
    await eventually(
        has_status(runtime, crash.job_id, JobStatus.FAILED), what="the crashing job to fail"
    )

    job = await runtime.manager.get(crash.job_id)
    assert job.attempts == job.max_attempts == 3
    assert job.last_error is not None and "ZeroDivisionError" in job.last_error
    assert await history(runtime, crash.job_id) == [
        ("retry_scheduled", 1),
        ("retry_scheduled", 2),
        ("failed", 3),
    ]
    dead = await runtime.store.list_dead_letters("t1", 10)
    assert [(d.original_job_id, d.attempts) for d in dead] == [(crash.job_id, 3)]
    assert dead[0].error is not None and "ZeroDivisionError" in dead[0].error
    assert worker.logs().count("handler raised") == 3

    # Still alive, and still working: jobs enqueued before and after the crash run.
    assert worker.proc.poll() is None
    after = await runtime.manager.enqueue(
        EnqueueRequest(type="test.echo", data={"value": "after"}, tenant_id="t1")
    )
    for done in [*before, after]:
        await eventually(has_status(runtime, done.job_id, JobStatus.COMPLETED), what="echo jobs")
    assert worker.proc.poll() is None

    worker.signal(signal.SIGTERM)
    assert await exit_code(worker) == 0
