"""What a worker process says while it shuts down, and a second signal that
forces the exit: its held jobs go back to waiting at once, not when their
leases run out.

Every process is `python -m queue_service.cli worker` (tests.support.processes)
with the test job types; `test.sleep` has a 2 s lease.
"""

from __future__ import annotations

import asyncio
import signal
import time
from uuid import UUID

import pytest

from queue_service.core.jobs import JobStatus
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime
from tests.integration.conftest import Spawn
from tests.support.processes import ServiceProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


async def logged(proc: ServiceProcess, text: str, timeout: float = 15.0) -> None:
    async def probe() -> bool:
        return text in proc.logs()

    await eventually(probe, timeout=timeout, what=f"{text!r} in the logs of pid {proc.pid}")


async def sleeping_jobs(runtime: Runtime, *seconds: float) -> list[UUID]:
    done = await runtime.manager.enqueue_many(
        [EnqueueRequest(type="test.sleep", data={"seconds": s}, tenant_id="t1") for s in seconds]
    )
    return [d.job_id for d in done]


async def all_active(runtime: Runtime, job_ids: list[UUID]) -> None:
    async def probe() -> bool:
        jobs = [await runtime.manager.get(j) for j in job_ids]
        return all(j.status is JobStatus.ACTIVE for j in jobs)

    await eventually(probe, what="the jobs to start")


async def test_draining_says_how_long_it_waits_for_how_many_jobs_and_each_that_ends(
    runtime: Runtime, spawn: Spawn
) -> None:
    worker = spawn("worker", "--queues", "test", QUEUE_SERVICE_SHUTDOWN_GRACE_SECONDS="20")
    # Long enough to be still running when the signal lands on a busy machine.
    quick, slow = await sleeping_jobs(runtime, 3, 6)
    await all_active(runtime, [quick, slow])

    worker.signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 20) == 0

    logs = worker.logs()
    order = [
        "signal received, draining (send it again to force the exit)",
        "draining: waiting up to 20 s for 2 running jobs",
        "draining: 1 running job left",
        "draining: 0 running jobs left",
        "worker stopped",
    ]
    assert [logs.index(line) for line in order] == sorted(logs.index(line) for line in order)
    for job_id in (quick, slow):
        assert (await runtime.manager.get(job_id)).status is JobStatus.COMPLETED


async def test_a_second_signal_forces_the_exit_and_gives_the_jobs_back_at_once(
    runtime: Runtime, spawn: Spawn
) -> None:
    worker = spawn(
        "worker",
        "--queues",
        "test",
        QUEUE_SERVICE_SHUTDOWN_GRACE_SECONDS="60",
        QUEUE_SERVICE_WORKER_ID="forced",
    )
    job_ids = await sleeping_jobs(runtime, 30, 30)
    await all_active(runtime, job_ids)

    worker.signal(signal.SIGTERM)
    await logged(worker, "draining: waiting up to 60 s for 2 running jobs")
    forced_at = time.monotonic()
    worker.signal(signal.SIGINT)
    assert await asyncio.to_thread(worker.wait, 20) == 0
    took = time.monotonic() - forced_at

    # Well inside the 60 s grace, and before the 2 s leases could expire and
    # the jobs be rescued (nothing here runs a rescuer anyway: no leader).
    assert took < 10, f"exit {took:.1f} s after the second signal"
    for job_id in job_ids:
        job = await runtime.manager.get(job_id)
        assert (job.status, job.attempts) == (JobStatus.WAITING, 0)
        events = await runtime.store.job_events(job_id)
        assert [(e.event, e.worker_id) for e in events] == [("released", "forced")]
    logs = worker.logs()
    assert "second signal: forcing the exit, releasing held jobs now" in logs
    assert "forcing the exit: releasing 2 running jobs" in logs
    assert logs.count("job released") == 2
    assert logs.index("forcing the exit") < logs.index("worker stopped")
