"""A snooze ("not now, try at T") frees the worker slot, uses no attempt and is
recorded in the job's history; hooks see every attempt with its outcome."""

from __future__ import annotations

from typing import Any

from queue_service.core.jobs import ClaimedJob, JobStatus
from queue_service.core.outcome import Completed, Outcome, Snoozed
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime
from tests.integration.conftest import WorkerFactory
from tests.support.waiting import eventually


def snoozing(times: int, seconds: float = 0.05) -> EnqueueRequest:
    return EnqueueRequest(
        type="test.snooze", data={"times": times, "seconds": seconds}, tenant_id="t1"
    )


async def test_a_snoozed_job_runs_again_without_using_an_attempt(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    done = await runtime.manager.enqueue(snoozing(3))
    run_worker()

    async def completed() -> bool:
        return (await runtime.manager.get(done.job_id)).status is JobStatus.COMPLETED

    await eventually(completed, what="the snoozed job completes")
    job = await runtime.manager.get(done.job_id)
    # max_attempts is 1: three snoozes and a success, all within one attempt.
    assert (job.attempts, job.max_attempts) == (1, 1)
    assert job.result == {"snoozes": 3, "attempt": 1}
    events = await runtime.store.job_events(done.job_id)
    assert [(e.event, e.attempt) for e in events] == [
        ("snoozed", 1),
        ("snoozed", 1),
        ("snoozed", 1),
        ("completed", 1),
    ]
    assert events[0].error == "bucket empty (1 of 3)"


async def test_a_snoozed_job_waits_until_its_time_and_frees_its_slot(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    done = await runtime.manager.enqueue(snoozing(1, seconds=3600))
    worker = run_worker()

    async def snoozed() -> bool:
        return any(e.event == "snoozed" for e in await runtime.store.job_events(done.job_id))

    await eventually(snoozed, what="the job snoozes")
    job = await runtime.manager.get(done.job_id)
    assert job.status is JobStatus.DELAYED and job.attempts == 0
    assert worker.runners["test"].running == 0 and not worker.runners["test"].held
    assert worker.snoozed == 1


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Any, bool]] = []

    def before(self, job: ClaimedJob) -> str:
        return f"started {job.type}"

    def after(self, job: ClaimedJob, outcome: Outcome, duration_seconds: float, state: Any) -> None:
        self.seen.append((job.type, type(outcome).__name__, state, duration_seconds >= 0))


class Broken:
    def before(self, job: ClaimedJob) -> None:
        raise RuntimeError("a broken hook")

    def after(self, job: ClaimedJob, outcome: Outcome, duration_seconds: float, state: Any) -> None:
        raise RuntimeError("a broken hook")


async def test_hooks_see_each_attempt_with_its_outcome_and_a_broken_hook_changes_nothing(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    recorder = Recorder()
    snoozed = await runtime.manager.enqueue(snoozing(1))
    run_worker(hooks=[Broken(), recorder])

    async def completed() -> bool:
        return (await runtime.manager.get(snoozed.job_id)).status is JobStatus.COMPLETED

    await eventually(completed, what="the job completes despite a broken hook")
    assert recorder.seen == [
        ("test.snooze", Snoozed.__name__, "started test.snooze", True),
        ("test.snooze", Completed.__name__, "started test.snooze", True),
    ]
