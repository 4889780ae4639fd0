"""webhook.process against real receivers on loopback: Standard Webhooks
signatures verified by the standardwebhooks library, one webhook-id per
logical event, rotation, 410 / 429 / 5xx, redirects and the response cap."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import orjson
import pytest
from standardwebhooks import Webhook

from queue_service.core.jobs import Job, JobStatus
from queue_service.errors import InvalidPayloadError
from queue_service.processors.webhooks import platform_event
from queue_service.providers.webhooks import new_secret
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime, open_runtime
from tests.integration.conftest import WorkerFactory, make_settings
from tests.support.waiting import eventually
from tests.support.webhook_receiver import Answer, Canary, Receiver

SECRET = new_secret()
NEXT_SECRET = new_secret()
TENANT = "acme"


@pytest.fixture
async def runtime(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    # Configured endpoints may reach 127.0.0.1 (the receivers); nothing else
    # on loopback, and never a URL given in a job. A test may override
    # settings through indirect parametrization.
    overrides: dict[str, Any] = {
        "queue_service_webhook_allow_private_cidrs": "127.0.0.1/32",
        **getattr(request, "param", {}),
    }
    settings = make_settings(database_url, **overrides)
    async with open_runtime(settings, database_url) as rt:
        yield rt


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver([SECRET]) as r:
        yield r


def webhook(endpoint: str | None = "orders", **fields: Any) -> EnqueueRequest:
    data: dict[str, Any] = {"event": "order.paid", "payload": {"order_id": "o-1", "amount": 1200}}
    data.update({"endpoint": endpoint} if endpoint else {})
    data.update(fields)
    return EnqueueRequest(type="webhook.process", data=data, tenant_id=TENANT)


async def run_until(
    runtime: Runtime, run_worker: WorkerFactory, request: EnqueueRequest, status: JobStatus
) -> Job:
    done = await runtime.manager.enqueue(request)
    run_worker(queues=("communication",))
    return await wait_for(runtime, done.job_id, status)


async def wait_for(runtime: Runtime, job_id: UUID, status: JobStatus) -> Job:
    async def probe() -> bool:
        return (await runtime.manager.get(job_id)).status is status

    await eventually(probe, what=f"job {job_id} {status.value}")
    return await runtime.manager.get(job_id)


async def test_a_webhook_is_delivered_and_verifies_with_the_standardwebhooks_library(
    runtime: Runtime, run_worker: WorkerFactory, receiver: Receiver
) -> None:
    assert await runtime.store.add_webhook_endpoint(TENANT, "orders", receiver.url, SECRET)
    job = await run_until(runtime, run_worker, webhook(), JobStatus.COMPLETED)

    [delivery] = receiver.deliveries
    assert delivery.verified_by == [0] and delivery.answered == 200
    headers = {
        "webhook-id": delivery.webhook_id,
        "webhook-timestamp": delivery.timestamp,
        "webhook-signature": " ".join(delivery.signatures),
    }
    body = Webhook(SECRET).verify(delivery.body, headers)
    assert body["type"] == "order.paid"
    assert body["data"] == {"order_id": "o-1", "amount": 1200}
    assert job.result == {"webhook_id": delivery.webhook_id, "status_code": 200}
    [record] = await runtime.store.webhook_deliveries(job.id)
    assert (record.outcome, record.status_code, record.attempt) == ("delivered", 200, 1)
    assert record.target == receiver.url  # no query string to hide here


async def test_every_retry_after_a_500_carries_the_same_webhook_id(
    runtime: Runtime, run_worker: WorkerFactory, receiver: Receiver
) -> None:
    await runtime.store.add_webhook_endpoint(TENANT, "orders", receiver.url, SECRET)
    receiver.answer(Answer(500, body=b"upstream exploded"))
    job = await run_until(runtime, run_worker, webhook(), JobStatus.COMPLETED)

    [(webhook_id, attempts)] = receiver.by_id().items()
    assert [a.answered for a in attempts] == [500, 200]
    assert all(a.verified_by == [0] for a in attempts)
    assert job.attempts == 2 and job.result["webhook_id"] == webhook_id
    records = await runtime.store.webhook_deliveries(job.id)
    assert [(r.attempt, r.outcome, r.status_code) for r in records] == [
        (1, "retry", 500),
        (2, "delivered", 200),
    ]
    assert records[0].response_excerpt == "upstream exploded"
    assert {r.webhook_id for r in records} == {webhook_id}


async def test_a_dlq_replay_carries_the_webhook_id_of_the_original_event(
    runtime: Runtime, run_worker: WorkerFactory, receiver: Receiver
) -> None:
    await runtime.store.add_webhook_endpoint(TENANT, "orders", receiver.url, SECRET)
    receiver.answer(Answer(404))
    failed = await run_until(runtime, run_worker, webhook(), JobStatus.FAILED)
    [dead] = await runtime.store.list_dead_letters(TENANT, 10)
    replayed = await runtime.manager.replay_dead_letter(dead.id, TENANT, "test")
    await wait_for(runtime, replayed, JobStatus.COMPLETED)

    assert failed.attempts == 1  # a 404 is not retried
    [(_, deliveries)] = receiver.by_id().items()
    assert [d.answered for d in deliveries] == [404, 200]


async def test_during_a_rotation_each_delivery_carries_two_signatures_that_each_verify(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    with Receiver([SECRET, NEXT_SECRET]) as receiver:
        await runtime.store.add_webhook_endpoint(TENANT, "orders", receiver.url, SECRET)
        assert await runtime.store.rotate_webhook_secret(TENANT, "orders", NEXT_SECRET)
        await run_until(runtime, run_worker, webhook(), JobStatus.COMPLETED)
        assert await runtime.store.finish_webhook_rotation(TENANT, "orders")
        done = await runtime.manager.enqueue(webhook(payload={"order_id": "o-2"}))
        await wait_for(runtime, done.job_id, JobStatus.COMPLETED)

    rotating, finished = receiver.deliveries
    assert len(rotating.signatures) == 2 and rotating.verified_by == [0, 1]
    assert len(finished.signatures) == 1 and finished.verified_by == [1]


async def test_a_410_disables_the_endpoint_and_later_jobs_for_it_fail_permanently(
    runtime: Runtime, run_worker: WorkerFactory, receiver: Receiver
) -> None:
    await runtime.store.add_webhook_endpoint(TENANT, "orders", receiver.url, SECRET)
    receiver.answer(Answer(410))
    gone = await run_until(runtime, run_worker, webhook(), JobStatus.FAILED)

    endpoint = await runtime.store.get_webhook_endpoint(TENANT, "orders")
    assert endpoint is not None and not endpoint.enabled
    assert "410 Gone" in (endpoint.disabled_reason or "")
    assert gone.attempts == 1 and "410 Gone" in (gone.last_error or "")
    [record] = await runtime.store.webhook_deliveries(gone.id)
    assert (record.outcome, record.status_code) == ("disabled", 410)

    later = await runtime.manager.enqueue(webhook(payload={"order_id": "o-2"}))
    refused = await wait_for(runtime, later.job_id, JobStatus.FAILED)
    assert refused.attempts == 1
    assert "'orders' of tenant 'acme' is disabled since" in (refused.last_error or "")
    assert "queue-service webhooks enable --tenant acme orders" in (refused.last_error or "")
    assert len(receiver.deliveries) == 1  # nothing more was sent


async def test_a_429_snoozes_the_job_without_using_an_attempt(
    runtime: Runtime, run_worker: WorkerFactory, receiver: Receiver
) -> None:
    await runtime.store.add_webhook_endpoint(TENANT, "orders", receiver.url, SECRET)
    receiver.answer(Answer(429, headers={"retry-after": "3600"}))
    done = await runtime.manager.enqueue(webhook())
    run_worker(queues=("communication",))

    async def snoozed() -> bool:
        return any(e.event == "snoozed" for e in await runtime.store.job_events(done.job_id))

    await eventually(snoozed, what="the webhook snoozes")
    job = await runtime.manager.get(done.job_id)
    assert job.status is JobStatus.DELAYED and job.attempts == 0
    [event] = await runtime.store.job_events(done.job_id)
    assert "429" in (event.error or "")
    [record] = await runtime.store.webhook_deliveries(done.job_id)
    assert (record.outcome, record.status_code) == ("snoozed", 429)


async def test_a_redirect_is_not_followed(
    runtime: Runtime, run_worker: WorkerFactory, receiver: Receiver
) -> None:
    with Canary("127.0.0.2").running() as canary:
        await runtime.store.add_webhook_endpoint(TENANT, "orders", receiver.url, SECRET)
        receiver.answer(Answer(302, headers={"location": f"http://127.0.0.2:{canary.port}/"}))
        job = await run_until(runtime, run_worker, webhook(), JobStatus.FAILED)

    assert job.attempts == 1 and "redirects are not followed" in (job.last_error or "")
    assert canary.connections == 0


async def test_a_response_body_over_the_cap_is_cut_off_not_read_into_memory(
    runtime: Runtime, run_worker: WorkerFactory, receiver: Receiver
) -> None:
    total = 500 * 1024 * 1024
    await runtime.store.add_webhook_endpoint(TENANT, "orders", receiver.url, SECRET)
    receiver.answer(Answer(200, stream_bytes=total))
    job = await run_until(runtime, run_worker, webhook(), JobStatus.COMPLETED)

    [record] = await runtime.store.webhook_deliveries(job.id)
    assert record.outcome == "delivered" and len(record.response_excerpt or "") <= 512

    async def receiver_gave_up() -> list[int]:
        return receiver.streamed

    [sent] = await eventually(receiver_gave_up, what="the receiver's write to fail")
    assert sent < total // 10  # the client hung up long before the end


@pytest.mark.parametrize("runtime", [{"queue_service_webhook_timeout_seconds": 0.5}], indirect=True)
async def test_a_receiver_slower_than_the_time_cap_is_a_retryable_failure(
    runtime: Runtime, run_worker: WorkerFactory, receiver: Receiver
) -> None:
    await runtime.store.add_webhook_endpoint(TENANT, "orders", receiver.url, SECRET)
    receiver.answer(Answer(200, delay_seconds=3))
    done = await runtime.manager.enqueue(webhook())
    run_worker(queues=("communication",))

    async def first_attempt() -> list[Any]:
        return await runtime.store.webhook_deliveries(done.job_id)

    [record, *_] = await eventually(first_attempt, what="the first attempt's record")
    assert (record.outcome, record.status_code) == ("retry", None)
    assert record.error == "no answer within 0.5 s"
    assert (record.duration_ms or 0) < 2000


async def test_an_endpoint_not_configured_fails_permanently_naming_the_fix(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    job = await run_until(runtime, run_worker, webhook("billing"), JobStatus.FAILED)
    assert job.attempts == 1
    assert "queue-service webhooks add --tenant acme billing URL" in (job.last_error or "")


async def test_a_platform_event_for_a_tenant_without_a_default_endpoint_is_skipped(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    data = platform_event("payment.succeeded", {"order_id": "o-1"})
    request = EnqueueRequest(type="webhook.process", data=data, tenant_id=TENANT)
    job = await run_until(runtime, run_worker, request, JobStatus.COMPLETED)
    assert job.result["skipped"] == "tenant has no endpoint 'default'"
    assert await runtime.store.list_dead_letters(TENANT, 10) == []


async def test_a_platform_event_goes_to_the_tenants_default_endpoint_when_it_has_one(
    runtime: Runtime, run_worker: WorkerFactory, receiver: Receiver
) -> None:
    await runtime.store.add_webhook_endpoint(TENANT, "default", receiver.url, SECRET)
    data = platform_event("payment.succeeded", {"order_id": "o-1"})
    request = EnqueueRequest(type="webhook.process", data=data, tenant_id=TENANT)
    await run_until(runtime, run_worker, request, JobStatus.COMPLETED)
    [delivery] = receiver.deliveries
    assert delivery.verified_by == [0]
    assert orjson.loads(delivery.body)["type"] == "payment.succeeded"


@pytest.mark.parametrize("runtime", [{"queue_service_env": "development"}], indirect=True)
async def test_in_development_an_unconfigured_endpoint_goes_to_the_log_only_sink(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    job = await run_until(runtime, run_worker, webhook("billing"), JobStatus.COMPLETED)
    assert job.result["delivered_to"] == "development sink"
    [record] = await runtime.store.webhook_deliveries(job.id)
    assert record.outcome == "development"


async def test_a_webhook_naming_both_or_neither_destination_is_refused_at_enqueue(
    runtime: Runtime,
) -> None:
    with pytest.raises(InvalidPayloadError, match="exactly one of endpoint"):
        await runtime.manager.enqueue(webhook("orders", url="https://hooks.example/x"))
    with pytest.raises(InvalidPayloadError, match="exactly one of endpoint"):
        await runtime.manager.enqueue(webhook(None))
