"""Several real worker processes at once: queue pauses seen by every worker,
per tenant, across restarts; and leader fail-over that keeps rescuing.

Every process is `python -m queue_service.cli ...` (tests.support.processes)
with the test job types, polling every 0.2 s, leader interval 0.5 s.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from queue_service.core.jobs import JobStatus
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime
from tests.integration.conftest import Spawn, a_long_job_taken, registered
from tests.support.processes import ServiceProcess
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

LEADER_INTERVAL = 0.5  # QUEUE_SERVICE_LEADER_INTERVAL_SECONDS set by ServiceProcess
Probe = Callable[[], Awaitable[bool]]


async def holds_for(seconds: float, probe: Probe, what: str) -> None:
    """Check ``probe`` stays true for ``seconds`` (a negative property: no
    event to wait for, so watch it for the whole window)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert await probe(), f"{what} stopped holding"
        await asyncio.sleep(0.05)


async def counts(runtime: Runtime, tenant: str) -> dict[str, int]:
    found = (await runtime.store.queue_counts(tenant)).get("test")
    return found.counts() if found else {}


def echoes(n: int, tenant: str = "t1") -> list[EnqueueRequest]:
    return [EnqueueRequest(type="test.echo", data={"value": i}, tenant_id=tenant) for i in range(n)]


async def fetch_one(runtime: Runtime, query: Any, params: dict[str, Any]) -> tuple[Any, ...]:
    async with runtime.db.connection() as conn:
        cur = await conn.execute(query, params)
        row: tuple[Any, ...] | None = await cur.fetchone()
    assert row is not None
    return row


def all_waiting(runtime: Runtime, tenant: str, n: int) -> Probe:
    async def probe() -> bool:
        return await counts(runtime, tenant) == {
            "waiting": n,
            "delayed": 0,
            "active": 0,
            "completed": 0,
            "failed": 0,
            "cancelled": 0,
        }

    return probe


def all_completed(runtime: Runtime, tenant: str, n: int) -> Probe:
    async def probe() -> bool:
        c = await counts(runtime, tenant)
        return c.get("completed") == n and c["waiting"] == c["active"] == 0

    return probe


async def test_a_paused_queue_starts_nothing_on_any_worker_until_resumed(
    runtime: Runtime, spawn: Spawn
) -> None:
    spawn("worker", "--queues", "test", QUEUE_SERVICE_WORKER_ID="w1")
    spawn("worker", "--queues", "test", QUEUE_SERVICE_WORKER_ID="w2")
    await registered(runtime, "w1", "w2")

    await runtime.store.pause_queue("test", "*", "ops")
    await runtime.manager.enqueue_many(echoes(20))
    await holds_for(1.5, all_waiting(runtime, "t1", 20), "all 20 jobs waiting while paused")

    assert await runtime.store.resume_queue("test", "*")
    await eventually(all_completed(runtime, "t1", 20), what="all 20 jobs after resume")


async def test_a_pause_stops_new_pick_ups_within_a_second_while_jobs_flow(
    runtime: Runtime, spawn: Spawn
) -> None:
    spawn("worker", "--queues", "test", QUEUE_SERVICE_WORKER_ID="w1")
    spawn("worker", "--queues", "test", QUEUE_SERVICE_WORKER_ID="w2")
    await registered(runtime, "w1", "w2")

    flowing = True

    async def stream() -> None:
        while flowing:
            await runtime.manager.enqueue(
                EnqueueRequest(type="test.sleep", data={"seconds": 0.2}, tenant_id="t1")
            )
            await asyncio.sleep(0.05)

    feeder = asyncio.create_task(stream())
    try:

        async def flowing_through() -> bool:
            return (await counts(runtime, "t1")).get("completed", 0) >= 5

        await eventually(flowing_through, what="jobs to flow")
        await runtime.store.pause_queue("test", "*", "ops")
        paused_at = await runtime.store.db_now()

        async def past(moment: datetime) -> bool:
            return await runtime.store.db_now() > moment

        # Keep offering work through the pause for 1.5 s of database time.
        await eventually(lambda: past(paused_at + timedelta(seconds=1.5)), timeout=5)
    finally:
        flowing = False
        await feeder

    (last_start,) = await fetch_one(
        runtime,
        "SELECT max(started_at) FROM ("
        " SELECT started_at FROM jobs UNION ALL SELECT started_at FROM finished_jobs"
        ") s",
        {},
    )
    (offered_after,) = await fetch_one(
        runtime,
        "SELECT count(*) FROM jobs WHERE status = 'waiting' AND created_at > %(at)s",
        {"at": paused_at},
    )
    assert offered_after >= 10, "the stream must have kept offering work during the pause"
    assert last_start < paused_at + timedelta(seconds=1), (
        f"a job was picked up {(last_start - paused_at).total_seconds():.3f} s after the pause"
    )


async def test_a_pause_for_one_tenant_does_not_hold_back_another(
    runtime: Runtime, spawn: Spawn
) -> None:
    spawn("worker", "--queues", "test", QUEUE_SERVICE_WORKER_ID="w1")
    spawn("worker", "--queues", "test", QUEUE_SERVICE_WORKER_ID="w2")
    await registered(runtime, "w1", "w2")

    await runtime.store.pause_queue("test", "t1", "ops")
    # t1's jobs are older, so claims would take them first were they not paused.
    await runtime.manager.enqueue_many(echoes(10, "t1"))
    await runtime.manager.enqueue_many(echoes(10, "t2"))

    await eventually(all_completed(runtime, "t2", 10), what="t2's jobs")
    assert await all_waiting(runtime, "t1", 10)()

    assert await runtime.store.resume_queue("test", "t1")
    await eventually(all_completed(runtime, "t1", 10), what="t1's jobs after resume")


async def test_a_pause_survives_a_worker_restart(runtime: Runtime, spawn: Spawn) -> None:
    first = spawn("worker", "--queues", "test", QUEUE_SERVICE_WORKER_ID="before")
    await registered(runtime, "before")
    await runtime.store.pause_queue("test", "*", "ops")

    first.signal(signal.SIGTERM)
    assert await asyncio.to_thread(first.wait, 10) == 0
    spawn("worker", "--queues", "test", QUEUE_SERVICE_WORKER_ID="after")
    await registered(runtime, "after")

    await runtime.manager.enqueue_many(echoes(5))
    await holds_for(1.5, all_waiting(runtime, "t1", 5), "all 5 jobs waiting after the restart")

    assert await runtime.store.resume_queue("test", "*")
    await eventually(all_completed(runtime, "t1", 5), what="the jobs after resume")


def became_leader(proc: ServiceProcess) -> bool:
    return "became leader" in proc.logs()


async def test_leadership_fails_over_and_the_new_leader_keeps_rescuing(
    runtime: Runtime, spawn: Spawn
) -> None:
    # A worker-only process takes a long job before the serve processes start,
    # so the job is on a process this test can kill; it stands aside from the
    # election, so the two serve processes are the candidates.
    worker = spawn(
        "worker",
        "--queues",
        "test",
        QUEUE_SERVICE_WORKER_ID="worker",
        QUEUE_SERVICE_LEADER_CANDIDATE="false",
    )
    await registered(runtime, "worker")
    job_id = await a_long_job_taken(runtime, "the worker to take the job")

    servers = {
        name: spawn("serve", QUEUE_SERVICE_WORKER_ID=name) for name in ("serve-1", "serve-2")
    }
    await registered(runtime, *servers)

    async def leaders() -> list[str]:
        return [name for name, proc in servers.items() if became_leader(proc)]

    elected = await eventually(leaders, what="a leader")
    assert len(elected) == 1, "two processes both say they lead"
    (follower_id,) = set(servers) - set(elected)
    leader, follower = servers[elected[0]], servers[follower_id]

    assert not became_leader(follower), "two processes both say they lead"
    leader.signal(signal.SIGKILL)
    killed = time.monotonic()

    async def took_over() -> bool:
        return became_leader(follower)

    await eventually(took_over, timeout=5, what="the follower to become leader")
    took = time.monotonic() - killed
    assert took < 3 * LEADER_INTERVAL, f"fail-over took {took:.2f} s"

    # The new leader rescues a job that stalls after the fail-over.
    job = await runtime.manager.get(job_id)
    assert job.status is JobStatus.ACTIVE, "the job ended before its worker could be killed"
    worker.signal(signal.SIGKILL)

    async def completed() -> bool:
        return (await runtime.manager.get(job_id)).status is JobStatus.COMPLETED

    await eventually(completed, timeout=15, what="the stalled job to be rescued and completed")
    events = [(e.event, e.attempt) for e in await runtime.store.job_events(job_id)]
    assert events == [("rescued", 1), ("completed", 2)]
    assert "rescued stalled jobs" in follower.logs()
    rows = await fetch_one(
        runtime,
        "SELECT count(*), min(worker_id) FROM test_ledger WHERE job_id = %(id)s",
        {"id": job_id},
    )
    assert rows == (1, follower_id)


async def test_a_frozen_leader_loses_leadership_and_steps_down_when_it_wakes(
    runtime: Runtime, spawn: Spawn
) -> None:
    servers = {
        name: spawn("serve", QUEUE_SERVICE_WORKER_ID=name) for name in ("serve-a", "serve-b")
    }
    await registered(runtime, *servers)

    async def leaders() -> list[str]:
        return [name for name, proc in servers.items() if became_leader(proc)]

    (elected,) = await eventually(leaders, what="a leader")
    (follower_id,) = set(servers) - {elected}
    leader, follower = servers[elected], servers[follower_id]
    # SIGSTOP keeps the leader's connection (and its lock) open: PostgreSQL's
    # idle_session_timeout on the leader session is what ends it.
    leader.signal(signal.SIGSTOP)
    frozen = time.monotonic()
    try:

        async def took_over() -> bool:
            return became_leader(follower)

        await eventually(took_over, timeout=10, what="the follower to become leader")
        took = time.monotonic() - frozen
        assert took < 5 * LEADER_INTERVAL + 2, f"fail-over took {took:.2f} s"
    finally:
        leader.signal(signal.SIGCONT)

    async def stepped_down() -> bool:
        return "no longer leader" in leader.logs()

    await eventually(stepped_down, what="the woken leader to step down")
