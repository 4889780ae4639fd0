"""refund.* against the Stripe-shaped server: never more than what is left,
never the same refund twice, whatever runs concurrently or again."""

from __future__ import annotations

import asyncio
from collections import Counter

from queue_service.core.jobs import JobStatus
from queue_service.runtime.service import Runtime
from queue_service.testing.stripe import FakeStripe
from tests.integration.conftest import WorkerFactory
from tests.support.money import follow_ups, refund, rows, run_to_end

REFUNDS = "/v1/refunds"


async def refund_ledger(runtime: Runtime) -> list[tuple[str, int]]:
    return [
        (r[0], r[1])
        for r in await rows(
            runtime, "SELECT status, amount FROM money_refunds ORDER BY first_attempt_at"
        )
    ]


async def test_two_concurrent_refunds_for_one_order_make_one_refund(
    runtime: Runtime, run_worker: WorkerFactory, fake_stripe: FakeStripe
) -> None:
    intent = fake_stripe.paid_intent(1000)
    # The same request twice is one job (its derived key) ...
    same = await asyncio.gather(*(runtime.manager.enqueue(refund(intent)) for _ in range(2)))
    assert same[0].job_id == same[1].job_id
    # ... and another request for the same order, under its own key, runs at once.
    other = await runtime.manager.enqueue(refund(intent, idempotency_key="support-ticket-9"))
    run_worker(queues=("money",))

    jobs = [await run_to_end(runtime, j.job_id) for j in (same[0], other)]
    assert fake_stripe.refund_count == 1
    assert [r.params["amount"] for r in fake_stripe.posts(REFUNDS)] == ["1000"]
    assert Counter(j.status for j in jobs) == {JobStatus.COMPLETED: 1, JobStatus.FAILED: 1}
    loser = next(j for j in jobs if j.status is JobStatus.FAILED)
    assert "nothing left to refund" in (loser.last_error or "")
    assert "remaining 0" in (loser.last_error or "")
    assert loser.attempts == 1
    assert await refund_ledger(runtime) == [("succeeded", 1000)]
    assert Counter(t for t, _ in await follow_ups(runtime)) == {"webhook.process": 1}
    assert await rows(runtime, "SELECT * FROM money_locks") == []


async def test_partial_refunds_are_never_duplicated_and_full_refunds_the_rest(
    runtime: Runtime, run_worker: WorkerFactory, fake_stripe: FakeStripe
) -> None:
    intent = fake_stripe.paid_intent(1000)
    fake_stripe.fail_after_effect_next(1)  # the first refund happens, its answer is lost
    first = await runtime.manager.enqueue(refund(intent, amount=300))
    again = await runtime.manager.enqueue(refund(intent, amount=300))
    assert again.job_id == first.job_id
    run_worker(queues=("money",))
    job = await run_to_end(runtime, first.job_id)
    assert job.status is JobStatus.COMPLETED, job.last_error
    # The lost answer was followed by a look at Stripe's list, not a second refund.
    assert job.attempts == 2 and len(fake_stripe.posts(REFUNDS)) == 1

    other = await runtime.manager.enqueue(refund(intent, amount=200))
    job = await run_to_end(runtime, other.job_id)
    assert job.status is JobStatus.COMPLETED, job.last_error
    assert sorted(r["amount"] for r in fake_stripe.refunds.values()) == [200, 300]

    full = await runtime.manager.enqueue(refund(intent, job_type="refund.full"))
    job = await run_to_end(runtime, full.job_id)
    assert job.status is JobStatus.COMPLETED, job.last_error
    assert job.result["amount"] == 500
    assert sorted(r["amount"] for r in fake_stripe.refunds.values()) == [200, 300, 500]
    assert sorted(await refund_ledger(runtime)) == [
        ("succeeded", 200),
        ("succeeded", 300),
        ("succeeded", 500),
    ]


async def test_a_refund_above_the_remainder_fails_at_once_naming_the_remainder(
    runtime: Runtime, run_worker: WorkerFactory, fake_stripe: FakeStripe
) -> None:
    intent = fake_stripe.paid_intent(1000)
    run_worker(queues=("money",))
    done = await runtime.manager.enqueue(refund(intent, amount=700))
    assert (await run_to_end(runtime, done.job_id)).status is JobStatus.COMPLETED

    over = await runtime.manager.enqueue(refund(intent, amount=400))
    job = await run_to_end(runtime, over.job_id)
    assert job.status is JobStatus.FAILED and job.attempts == 1
    assert "exceeds the remaining 3.00 USD" in (job.last_error or "")
    assert fake_stripe.refund_count == 1
    [dead] = await runtime.store.list_dead_letters("t1", 10)
    assert dead.original_job_id == over.job_id
