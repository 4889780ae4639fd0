"""analytics.track and analytics.batch against a fake analytics service that
verifies the SPEC §6 HMAC signature of every request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from queue_service.core.jobs import JobStatus
from queue_service.errors import InvalidPayloadError, PermanentError
from queue_service.providers.analytics import build
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime, open_runtime
from queue_service.settings import Settings
from tests.integration.conftest import WorkerFactory, make_settings
from tests.integration.test_webhooks import wait_for
from tests.support.analytics_server import FakeAnalytics
from tests.support.waiting import eventually

SECRET = "analytics-test-secret-0123456789abcdefghij"
SERVICE = "queue-service"


@pytest.fixture
def analytics() -> Iterator[FakeAnalytics]:
    with FakeAnalytics(SERVICE, SECRET) as fake:
        yield fake


@pytest.fixture
async def runtime(database_url: str, analytics: FakeAnalytics) -> AsyncIterator[Runtime]:
    settings = make_settings(
        database_url, analytics_service_url=analytics.url, internal_hmac_secret=SECRET
    )
    async with open_runtime(settings, database_url) as rt:
        yield rt


def track(event: str = "ticket.viewed", **fields: object) -> dict[str, object]:
    return {"event": event, "properties": {"event_id": "e-1"}, "user_id": "u-1", **fields}


def job(job_type: str, data: dict[str, object]) -> EnqueueRequest:
    return EnqueueRequest(type=job_type, data=data, tenant_id="acme")


async def test_track_and_batch_reach_the_analytics_service_with_valid_signatures(
    runtime: Runtime, run_worker: WorkerFactory, analytics: FakeAnalytics
) -> None:
    one = await runtime.manager.enqueue(
        job("analytics.track", track(timestamp="2026-01-02T03:04:05Z"))
    )
    many = await runtime.manager.enqueue(
        job("analytics.batch", {"events": [track("a"), track("b"), track("c")]})
    )
    run_worker(queues=("background",))
    await wait_for(runtime, one.job_id, JobStatus.COMPLETED)
    batch_job = await wait_for(runtime, many.job_id, JobStatus.COMPLETED)

    assert analytics.refused == []
    by_path = {r.path: r for r in analytics.received}
    tracked, batched = by_path["/api/v1/events/track"], by_path["/api/v1/events/batch"]
    assert (tracked.service, tracked.tenant_id) == (SERVICE, "acme")
    assert tracked.body == {
        "event": "ticket.viewed",
        "properties": {"event_id": "e-1"},
        "user_id": "u-1",
        "timestamp": "2026-01-02T03:04:05+00:00",
    }
    assert tracked.idempotency_key == f"analytics:{one.job_id}"
    assert [e["event"] for e in batched.body["events"]] == ["a", "b", "c"]
    assert batch_job.result == {"events": 3}


async def test_a_call_the_service_cannot_verify_is_a_permanent_authentication_failure(
    analytics: FakeAnalytics,
) -> None:
    provider = build(
        Settings(
            analytics_service_url=analytics.url,
            internal_hmac_secret="a-different-secret-0123456789abcdefghijkl",
        )
    )
    try:
        with pytest.raises(PermanentError) as refused:
            await provider.track("acme", {"event": "x"}, "analytics:k")
    finally:
        await provider.aclose()
    assert refused.value.reason == "authentication"
    assert analytics.refused and analytics.received == []


async def test_a_429_from_the_analytics_service_snoozes_without_using_an_attempt(
    runtime: Runtime, run_worker: WorkerFactory, analytics: FakeAnalytics
) -> None:
    analytics.script.append(429)
    done = await runtime.manager.enqueue(job("analytics.track", track()))
    run_worker(queues=("background",))

    async def snoozed() -> bool:
        return any(e.event == "snoozed" for e in await runtime.store.job_events(done.job_id))

    await eventually(snoozed, what="the analytics job snoozes")
    snoozed_job = await runtime.manager.get(done.job_id)
    assert snoozed_job.status is JobStatus.DELAYED and snoozed_job.attempts == 0


async def test_a_batch_over_500_events_is_refused_at_enqueue(runtime: Runtime) -> None:
    with pytest.raises(InvalidPayloadError, match="500"):
        await runtime.manager.enqueue(job("analytics.batch", {"events": [track()] * 501}))
    counts = await runtime.store.queue_counts(None)
    assert "background" not in counts or counts["background"].waiting == 0
