"""kill -9 of a worker process right after Stripe answered, before the job
completed: after the rescue, exactly one charge (or refund) at Stripe."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from queue_service.core.jobs import JobStatus
from queue_service.runtime.service import Runtime
from queue_service.testing.stripe import FakeStripe, Request
from tests.integration.conftest import Spawn
from tests.support.money import (
    TEST_STRIPE_KEY,
    payment,
    payment_ledger,
    refund,
    rows,
    run_to_end,
)
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.slow


def worker_env(fake: FakeStripe) -> dict[str, str]:
    return {
        "STRIPE_API_BASE": fake.url,
        "STRIPE_SECRET_KEY": TEST_STRIPE_KEY,
    }


async def kill_after_answer(
    spawn: Spawn, fake: FakeStripe, path: str, runtime: Runtime
) -> ServiceProcess:
    """Start a worker that Stripe's server SIGKILLs right after answering its
    first successful POST to ``path``; return it dead."""
    victim: list[ServiceProcess] = []

    def kill(request: Request) -> None:
        os.kill(victim[0].pid, signal.SIGKILL)

    fake.after_answer(lambda r: r.method == "POST" and r.path == path and r.status == 200, kill)
    env = worker_env(fake)
    victim.append(spawn("worker", "--queues", "money", QUEUE_SERVICE_WORKER_ID="doomed", **env))
    assert await asyncio.to_thread(victim[0].wait, 30) == -signal.SIGKILL
    return victim[0]


async def rescue(runtime: Runtime) -> None:
    """What the leader does once the lease runs out, without waiting for it."""
    async with runtime.db.connection() as conn:
        await conn.execute("UPDATE jobs SET lease_expires_at = now() - interval '1 second'")
    assert len((await runtime.store.rescue_expired()).rescued) == 1


async def test_a_worker_killed_right_after_stripe_charged_charges_once_after_rescue(
    runtime: Runtime, spawn: Spawn, fake_stripe: FakeStripe
) -> None:
    done = await runtime.manager.enqueue(payment())
    await kill_after_answer(spawn, fake_stripe, "/v1/payment_intents", runtime)

    job = await runtime.manager.get(done.job_id)
    assert job.status is JobStatus.ACTIVE and job.attempts == 1  # never completed
    assert fake_stripe.charge_count == 1
    assert await payment_ledger(runtime, "o1") == [("pending", 1050, None)]

    await rescue(runtime)
    spawn(
        "worker", "--queues", "money", QUEUE_SERVICE_WORKER_ID="survivor", **worker_env(fake_stripe)
    )
    job = await run_to_end(runtime, done.job_id, timeout=30)

    assert job.status is JobStatus.COMPLETED, job.last_error
    assert job.attempts == 2
    assert fake_stripe.charge_count == 1
    creates = fake_stripe.posts("/v1/payment_intents")
    assert len(creates) == 2 and creates[0].idempotency_key == creates[1].idempotency_key
    [intent_id] = fake_stripe.intents
    assert await payment_ledger(runtime, "o1") == [("succeeded", 1050, intent_id)]
    assert await rows(runtime, "SELECT * FROM money_locks") == []


async def test_a_worker_killed_right_after_stripe_refunded_refunds_once_after_rescue(
    runtime: Runtime, spawn: Spawn, fake_stripe: FakeStripe
) -> None:
    intent = fake_stripe.paid_intent(1000)
    done = await runtime.manager.enqueue(refund(intent, amount=400))
    await kill_after_answer(spawn, fake_stripe, "/v1/refunds", runtime)
    assert fake_stripe.refund_count == 1

    await rescue(runtime)
    spawn(
        "worker", "--queues", "money", QUEUE_SERVICE_WORKER_ID="survivor", **worker_env(fake_stripe)
    )
    job = await run_to_end(runtime, done.job_id, timeout=30)

    assert job.status is JobStatus.COMPLETED, job.last_error
    assert fake_stripe.refund_count == 1 and len(fake_stripe.posts("/v1/refunds")) == 1
    assert job.result["amount"] == 400
