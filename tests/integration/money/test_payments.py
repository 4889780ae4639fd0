"""payment.* against a Stripe-shaped HTTP server through the real Stripe
adapter (stripe SDK, HTTPX), on real PostgreSQL: one charge per order whatever
retries, rate limits, replays and concurrent jobs do."""

from __future__ import annotations

from collections import Counter

from queue_service.core.jobs import EnqueueRequest, JobStatus
from queue_service.runtime.service import Runtime
from queue_service.testing.stripe import FakeStripe
from tests.integration.conftest import WorkerFactory
from tests.support.money import follow_ups, payment, payment_ledger, rows, run_to_end
from tests.support.waiting import eventually

INTENTS = "/v1/payment_intents"


async def history(runtime: Runtime, job_id: object) -> list[tuple[str, int]]:
    return [(e.event, e.attempt) for e in await runtime.store.job_events(job_id)]  # type: ignore[arg-type]


async def test_a_payment_charges_once_and_completes_with_its_email_and_webhook(
    runtime: Runtime, run_worker: WorkerFactory, fake_stripe: FakeStripe
) -> None:
    done = await runtime.manager.enqueue(payment())
    run_worker(queues=("money",))

    job = await run_to_end(runtime, done.job_id)
    assert job.status is JobStatus.COMPLETED, job.last_error
    assert job.result["status"] == "succeeded" and job.result["amount"] == 1050
    assert fake_stripe.charge_count == 1
    [create] = fake_stripe.posts(INTENTS)
    assert create.params["metadata"]["order_id"] == "o1"
    assert create.params["amount"] == "1050" and create.params["currency"] == "usd"
    assert create.idempotency_key is not None and create.idempotency_key.startswith("qs_")
    assert await payment_ledger(runtime, "o1") == [
        ("succeeded", 1050, job.result["payment_intent_id"])
    ]
    # Enqueued by the completing transaction, one each.
    sent = await follow_ups(runtime)
    assert [t for t, _ in sent] == ["email.send", "webhook.process"]
    email, webhook = sent[0][1], sent[1][1]
    assert email["to"] == "buyer@example.com" and email["template"] == "payment_confirmation"
    assert email["context"]["order_id"] == "o1" and email["context"]["amount"] == 1050
    assert webhook["event"] == "payment.succeeded"
    assert await rows(runtime, "SELECT * FROM money_locks") == []


async def test_a_declined_card_fails_into_the_dlq_at_once_without_retries(
    runtime: Runtime, run_worker: WorkerFactory, fake_stripe: FakeStripe
) -> None:
    done = await runtime.manager.enqueue(payment(method="pm_card_chargeDeclined"))
    run_worker(queues=("money",))

    job = await run_to_end(runtime, done.job_id)
    assert job.status is JobStatus.FAILED
    assert job.attempts == 1 and job.max_attempts == 5
    assert "card declined" in (job.last_error or "")
    assert len(fake_stripe.posts(INTENTS)) == 1 and fake_stripe.charge_count == 0
    assert await history(runtime, done.job_id) == [("failed", 1)]
    dlq = await runtime.store.list_dead_letters("t1", 10)
    assert [d.original_job_id for d in dlq] == [done.job_id]
    assert await payment_ledger(runtime, "o1") == [("failed", 1050, None)]
    assert await follow_ups(runtime) == []
    assert await rows(runtime, "SELECT * FROM money_locks") == []


async def test_a_stripe_500_is_retried_with_the_same_idempotency_key_and_charges_once(
    runtime: Runtime, run_worker: WorkerFactory, fake_stripe: FakeStripe
) -> None:
    fake_stripe.fail_next(1, status=500)
    done = await runtime.manager.enqueue(payment())
    run_worker(queues=("money",))

    job = await run_to_end(runtime, done.job_id)
    assert job.status is JobStatus.COMPLETED, job.last_error
    assert job.attempts == 2
    creates = fake_stripe.posts(INTENTS)
    assert [r.status for r in creates] == [500, 200]
    assert creates[0].idempotency_key == creates[1].idempotency_key
    assert fake_stripe.charge_count == 1
    assert await history(runtime, done.job_id) == [("retry_scheduled", 1), ("completed", 2)]


async def test_a_stripe_429_with_retry_after_snoozes_without_using_an_attempt(
    runtime: Runtime, run_worker: WorkerFactory, fake_stripe: FakeStripe
) -> None:
    fake_stripe.fail_next(1, status=429, retry_after=120)
    done = await runtime.manager.enqueue(payment())
    run_worker(queues=("money",))

    async def snoozed() -> bool:
        return await history(runtime, done.job_id) == [("snoozed", 1)]

    await eventually(snoozed, what="the rate-limited job to snooze")
    job = await runtime.manager.get(done.job_id)
    assert job.status is JobStatus.DELAYED and job.attempts == 0
    [event] = await runtime.store.job_events(done.job_id)
    assert event.error == "stripe rate limited"
    [[delay]] = await rows(
        runtime,
        "SELECT extract(epoch FROM run_at - now()) FROM jobs WHERE id = %(id)s",
        {"id": done.job_id},
    )
    assert 100 < delay <= 120
    assert fake_stripe.charge_count == 0
    # Nothing is in flight: the order is not left locked.
    assert await rows(runtime, "SELECT * FROM money_locks") == []


async def test_a_dlq_replay_25_hours_later_is_reconciled_by_search_without_a_second_charge(
    runtime: Runtime, run_worker: WorkerFactory, fake_stripe: FakeStripe
) -> None:
    # Stripe charged, but the answer was a 500 (which Stripe then replays for
    # the key): the one attempt fails and the job lands in the DLQ.
    fake_stripe.fail_after_effect_next(1)
    done = await runtime.manager.enqueue(payment(max_attempts=1))
    run_worker(queues=("money",))
    job = await run_to_end(runtime, done.job_id)
    assert job.status is JobStatus.FAILED and fake_stripe.charge_count == 1
    assert await payment_ledger(runtime, "o1") == [("pending", 1050, None)]

    # 25 h pass: Stripe forgets the key, our ledger shows the attempt's age.
    fake_stripe.age_keys(25 * 3600)
    async with runtime.db.connection() as conn:
        await conn.execute(
            "UPDATE money_payments SET first_attempt_at = first_attempt_at - interval '25 hours',"
            " last_attempt_at = last_attempt_at - interval '25 hours'"
        )
    [dead] = await runtime.store.list_dead_letters("t1", 10)
    replay_id = await runtime.manager.replay_dead_letter(dead.id, "t1", "operator")

    replayed = await run_to_end(runtime, replay_id)
    assert replayed.status is JobStatus.COMPLETED, replayed.last_error
    assert fake_stripe.charge_count == 1
    assert len(fake_stripe.posts(INTENTS)) == 1  # no create after the search
    searches = [r for r in fake_stripe.requests if r.path == f"{INTENTS}/search"]
    assert len(searches) == 1 and "o1" in searches[0].params["query"]
    [intent_id] = fake_stripe.intents
    assert replayed.result["payment_intent_id"] == intent_id
    assert await payment_ledger(runtime, "o1") == [("succeeded", 1050, intent_id)]


async def test_two_payment_jobs_for_one_order_never_charge_at_once_and_both_end_well(
    runtime: Runtime, run_worker: WorkerFactory, fake_stripe: FakeStripe
) -> None:
    fake_stripe.create_delay_seconds = 0.5  # a slow Stripe: a wide window to overlap in
    first = await runtime.manager.enqueue(payment(idempotency_key="checkout-a"))
    second = await runtime.manager.enqueue(payment(idempotency_key="checkout-b"))
    run_worker(queues=("money",))

    jobs = [await run_to_end(runtime, j.job_id) for j in (first, second)]
    assert [j.status for j in jobs] == [JobStatus.COMPLETED, JobStatus.COMPLETED]
    assert Counter(j.result["status"] for j in jobs) == {"succeeded": 1, "already_paid": 1}
    assert fake_stripe.max_creates_in_flight == 1
    assert fake_stripe.charge_count == 1 and len(fake_stripe.posts(INTENTS)) == 1
    waited = next(j for j in jobs if j.result["status"] == "already_paid")
    assert ("snoozed", 1) in await history(runtime, waited.id)
    # One confirmation, from the job that charged.
    assert Counter(t for t, _ in await follow_ups(runtime)) == {
        "email.send": 1,
        "webhook.process": 1,
    }


async def test_an_authorized_payment_is_captured_once_and_a_second_capture_changes_nothing(
    runtime: Runtime, run_worker: WorkerFactory, fake_stripe: FakeStripe
) -> None:
    intent = fake_stripe.authorized_intent(2000)
    capture = EnqueueRequest(
        type="payment.capture",
        data={"payment_intent_id": intent, "order_id": "o-cap"},
        tenant_id="t1",
    )
    done = await runtime.manager.enqueue(capture)
    run_worker(queues=("money",))
    job = await run_to_end(runtime, done.job_id)
    assert job.status is JobStatus.COMPLETED and job.result["status"] == "captured"
    assert fake_stripe.intents[intent]["status"] == "succeeded"
    assert len(fake_stripe.posts(f"{INTENTS}/{intent}/capture")) == 1

    # Another capture of the same intent (a caller's own key): already captured is done.
    again = await runtime.manager.enqueue(
        EnqueueRequest(
            type="payment.capture",
            data={"payment_intent_id": intent, "order_id": "o-cap"},
            tenant_id="t1",
            idempotency_key="capture-again",
        )
    )
    assert (await run_to_end(runtime, again.job_id)).status is JobStatus.COMPLETED
    assert len(fake_stripe.posts(f"{INTENTS}/{intent}/capture")) == 1
