"""Deployment shapes without `serve` (decision 0022): API pods and worker pods.

Every `worker` is a leader candidate by default, so a fleet of `api` and
`worker` processes still rescues stalled jobs, maintains and schedules.
Real processes (tests.support.processes), kill -9, the test job types.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from queue_service.core.jobs import JobStatus
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime
from tests.integration.conftest import Spawn, a_long_job_taken, registered
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

LEADER_INTERVAL = 0.5  # QUEUE_SERVICE_LEADER_INTERVAL_SECONDS set by ServiceProcess


async def test_with_api_and_two_workers_a_killed_worker_s_job_is_rescued_and_completed_once(
    runtime: Runtime, spawn: Spawn
) -> None:
    api = spawn("api", QUEUE_SERVICE_WORKER_ID="api")
    doomed = spawn("worker", "--queues", "test", QUEUE_SERVICE_WORKER_ID="worker-a")
    await registered(runtime, "worker-a")
    job_id = await a_long_job_taken(runtime, "worker-a to take the job")
    survivor = spawn("worker", "--queues", "test", QUEUE_SERVICE_WORKER_ID="worker-b")
    await registered(runtime, "worker-b")

    async def someone_leads() -> bool:
        return any("became leader" in p.logs() for p in (doomed, survivor))

    await eventually(someone_leads, what="one of the workers to become leader")

    doomed.signal(signal.SIGKILL)
    assert await asyncio.to_thread(doomed.wait, 10) == -signal.SIGKILL

    async def completed() -> bool:
        return (await runtime.manager.get(job_id)).status is JobStatus.COMPLETED

    await eventually(completed, timeout=20, what="the stalled job to be rescued and completed")
    events = [(e.event, e.attempt) for e in await runtime.store.job_events(job_id)]
    assert events == [("rescued", 1), ("completed", 2)]
    async with runtime.db.connection() as conn:
        cur = await conn.execute(
            "SELECT attempt, worker_id FROM test_ledger WHERE job_id = %(id)s", {"id": job_id}
        )
        assert await cur.fetchall() == [(2, "worker-b")]
    # The surviving worker's own leader duties rescued it; the API never leads.
    assert "rescued stalled jobs" in survivor.logs()
    assert "became leader" not in api.logs()
    assert api.proc.poll() is None


async def test_a_worker_that_opts_out_of_the_election_never_leads(
    runtime: Runtime, spawn: Spawn
) -> None:
    bystander = spawn(
        "worker",
        "--queues",
        "test",
        QUEUE_SERVICE_WORKER_ID="bystander",
        QUEUE_SERVICE_LEADER_CANDIDATE="false",
    )
    candidate = spawn("worker", "--queues", "test", QUEUE_SERVICE_WORKER_ID="candidate")
    await registered(runtime, "bystander", "candidate")

    async def candidate_leads() -> bool:
        return "became leader" in candidate.logs()

    await eventually(candidate_leads, what="the candidate to become leader")
    # With the candidate gone nobody stands: the bystander runs jobs but,
    # watched for eight leader intervals, never takes the lock.
    candidate.signal(signal.SIGKILL)
    assert await asyncio.to_thread(candidate.wait, 10) == -signal.SIGKILL
    echo = await runtime.manager.enqueue(
        EnqueueRequest(type="test.echo", data={"value": 1}, tenant_id="t1")
    )

    async def done() -> bool:
        return (await runtime.manager.get(echo.job_id)).status is JobStatus.COMPLETED

    await eventually(done, what="the bystander to run jobs")
    deadline = time.monotonic() + 8 * LEADER_INTERVAL
    while time.monotonic() < deadline:
        assert "became leader" not in bystander.logs()
        await asyncio.sleep(0.1)
    assert '"leader_candidate":false' in bystander.logs()


async def test_a_worker_behind_pgbouncer_that_opts_out_starts_without_a_listen_url(
    runtime: Runtime, spawn: Spawn
) -> None:
    # QUEUE_SERVICE_PGBOUNCER=true without DATABASE_LISTEN_URL refuses a
    # candidate (tests/e2e/test_startup_errors.py); opting out is the other way.
    spawn(
        "worker",
        "--queues",
        "test",
        QUEUE_SERVICE_WORKER_ID="pooled",
        QUEUE_SERVICE_PGBOUNCER="true",
        QUEUE_SERVICE_LEADER_CANDIDATE="false",
    )
    echo = await runtime.manager.enqueue(
        EnqueueRequest(type="test.echo", data={"value": 1}, tenant_id="t1")
    )

    async def done() -> bool:
        return (await runtime.manager.get(echo.job_id)).status is JobStatus.COMPLETED

    await eventually(done, timeout=30, what="the opted-out worker to run the job")
