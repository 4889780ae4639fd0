"""Jobs behind the outbound gate: an empty bucket or an open breaker snoozes
the job (no attempt used, `snoozed` in its history, its worker slot freed)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import orjson
import psycopg
import pytest

from queue_service.core.jobs import JobStatus
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime, open_runtime
from tests.integration.conftest import WorkerFactory, make_settings
from tests.support.outbound import PROCESSORS as OUTBOUND_PROCESSORS
from tests.support.outbound import Recorder, recording_server
from tests.support.processors import LEDGER_DDL, PROCESSORS
from tests.support.waiting import eventually

LIMITS = {
    "testapi": {"size": 1, "refill_per_second": 0.1, "max_in_flight": 5},
    # Tokens enough for every attempt: only its breaker stops a call.
    "flakyapi": {"size": 10, "refill_per_second": 1, "max_in_flight": 5},
}


@pytest.fixture
def upstream() -> Iterator[tuple[str, Recorder]]:
    with recording_server() as found:
        yield found


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    """The engine fixture's runtime, with the outbound test job type and a
    one-token bucket that refills every 10 s."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
    settings = make_settings(
        database_url,
        queue_service_outbound_limits=orjson.dumps(LIMITS).decode(),
        queue_service_breaker_failures=2,
    )
    async with open_runtime(
        settings, database_url, extra_processors=[*PROCESSORS, *OUTBOUND_PROCESSORS]
    ) as rt:
        yield rt


def call(url: str, service: str = "testapi") -> EnqueueRequest:
    return EnqueueRequest(
        type="test.outbound_call", data={"url": url, "service": service}, tenant_id="t1"
    )


async def test_a_job_that_finds_the_bucket_empty_snoozes_until_the_next_token_freeing_its_slot(
    runtime: Runtime, run_worker: WorkerFactory, upstream: tuple[str, Recorder]
) -> None:
    url, server = upstream
    first = await runtime.manager.enqueue(call(url))
    second = await runtime.manager.enqueue(call(url))
    worker = run_worker()

    async def one_done_one_snoozed() -> bool:
        jobs = [await runtime.manager.get(j.job_id) for j in (first, second)]
        return sorted(j.status.value for j in jobs) == ["completed", "delayed"]

    await eventually(one_done_one_snoozed, what="one call made, the other snoozed")
    (snoozed,) = [
        j
        for j in [await runtime.manager.get(j.job_id) for j in (first, second)]
        if j.status is JobStatus.DELAYED
    ]
    assert snoozed.attempts == 0
    history = await runtime.store.job_events(snoozed.id)
    assert [(e.event, e.error) for e in history] == [
        ("snoozed", "testapi: bucket empty, next token reserved")
    ]
    # The next token is ~10 s away (0.1/s) and booked for this job: it comes
    # back when it is due, plus a few ms of jitter at most.
    assert 8 < (snoozed.run_at - datetime.now(UTC)).total_seconds() <= 10.1
    (bucket,) = await runtime.store.outbound_states("testapi")
    assert bucket.reserved == 1
    assert worker.runners["test"].running == 0 and not worker.runners["test"].held
    assert len(server.spans) == 1


async def test_an_open_breaker_snoozes_the_attempt_after_the_failures_that_opened_it(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    with recording_server(status=503) as (url, server):
        job = await runtime.manager.enqueue(call(url, "flakyapi"))
        run_worker()

        async def snoozed_by_the_breaker() -> bool:
            events = await runtime.store.job_events(job.job_id)
            return any(e.event == "snoozed" for e in events)

        await eventually(snoozed_by_the_breaker, what="the third attempt to snooze")
    history = await runtime.store.job_events(job.job_id)
    assert [e.event for e in history] == ["retry_scheduled", "retry_scheduled", "snoozed"]
    assert history[-1].error == "flakyapi: circuit breaker open after 2 failures"
    found = await runtime.manager.get(job.job_id)
    assert (found.status, found.attempts) == (JobStatus.DELAYED, 2)
    assert len(server.spans) == 2
    (state,) = await runtime.store.outbound_states("flakyapi")
    assert state.breaker_state == "open"
