"""order.fulfill follows the money: it waits for the order's payment, then
enqueues the mints, the order webhook and the analytics event in one
transaction; a declined payment fulfils nothing. Runs the whole chain on the
development providers (payment sandbox, wallet, minter, outbox)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID

import pytest

from queue_service.core.jobs import EnqueueRequest, Job, JobStatus
from queue_service.runtime.service import Runtime, open_runtime
from tests.integration.conftest import WorkerFactory, make_settings
from tests.support.waiting import eventually

TENANT = "venue-1"
WALLET = "7EYnhQoR9YM3N7UoaKRoA44Uy8JeaZV3qyouov87awMs"
ALL_QUEUES = ("money", "communication", "background")


@pytest.fixture
async def runtime(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Runtime]:
    for name in ("STRIPE_SECRET_KEY", "SMTP_HOST", "MINTING_SERVICE_URL", "SOLANA_RPC_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = make_settings(
        database_url,
        queue_service_env="development",
        queue_service_outbox_dir=tmp_path / "outbox",
    )
    async with open_runtime(settings, database_url) as rt:
        yield rt


def payment(order: str, card: str = "pm_card_visa") -> EnqueueRequest:
    return EnqueueRequest(
        type="payment.process",
        data={
            "order_id": order,
            "user_id": "u-1",
            "amount": 5000,
            "currency": "EUR",
            "payment_method_id": card,
            "customer_email": "buyer@example.com",
        },
        tenant_id=TENANT,
    )


def fulfil(order: str, tickets: int = 2) -> EnqueueRequest:
    return EnqueueRequest(
        type="order.fulfill",
        data={
            "order_id": order,
            "user_id": "u-1",
            "tickets": [{"ticket_id": f"{order}-t{i}", "event_id": "e-1"} for i in range(tickets)],
            "customer_email": "buyer@example.com",
            "wallet_address": WALLET,
        },
        tenant_id=TENANT,
    )


async def finished(runtime: Runtime, job_id: UUID) -> Job:
    async def probe() -> bool:
        status = (await runtime.manager.get(job_id)).status
        return status in (JobStatus.COMPLETED, JobStatus.FAILED)

    await eventually(probe, what=f"job {job_id} finished", timeout=30)
    return await runtime.manager.get(job_id)


async def completed_types(runtime: Runtime) -> list[str]:
    async with runtime.db.connection() as conn:
        cur = await conn.execute(
            "SELECT type FROM finished_jobs WHERE status = 'completed' ORDER BY type"
        )
        return [row[0] for row in await cur.fetchall()]


async def quiet(runtime: Runtime) -> None:
    async def probe() -> bool:
        async with runtime.db.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM jobs")
            row = await cur.fetchone()
        return row is not None and row[0] == 0

    await eventually(probe, what="every job finished", timeout=30)


async def test_a_paid_order_is_fulfilled_its_tickets_minted_and_everyone_told(
    runtime: Runtime, run_worker: WorkerFactory, tmp_path: Path
) -> None:
    # Fulfilment first: it must wait for the payment, not mint for free.
    fulfilled = await runtime.manager.enqueue(fulfil("o-1"))
    paid = await runtime.manager.enqueue(payment("o-1"))
    run_worker(queues=ALL_QUEUES)

    assert (await finished(runtime, paid.job_id)).status is JobStatus.COMPLETED
    job = await finished(runtime, fulfilled.job_id)
    assert job.status is JobStatus.COMPLETED
    assert job.result == {"order_id": "o-1", "tickets": 2, "mints": 2}
    await quiet(runtime)
    types = await completed_types(runtime)
    assert types.count("ticket.mint") == 2
    # payment confirmation + one nft_minted per ticket
    assert types.count("email.send") == 3
    # payment.succeeded and order.fulfilled (to the development sink)
    assert types.count("webhook.process") == 2
    assert types.count("analytics.track") == 1
    emails = sorted(p.name for p in (tmp_path / "outbox").rglob("*.eml"))
    assert len(emails) == 3


async def test_fulfilment_waits_for_the_payment_without_using_an_attempt(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    fulfilled = await runtime.manager.enqueue(fulfil("o-2", tickets=1))
    run_worker(queues=("money",))

    async def snoozed() -> bool:
        events = await runtime.store.job_events(fulfilled.job_id)
        return any(e.event == "snoozed" for e in events)

    await eventually(snoozed, what="the fulfilment snoozes")
    job = await runtime.manager.get(fulfilled.job_id)
    assert job.status is JobStatus.DELAYED and job.attempts == 0
    [event] = [e for e in await runtime.store.job_events(job.id) if e.event == "snoozed"]
    assert event.error == "waiting for the payment of order o-2 (not yet run)"

    await runtime.manager.enqueue(payment("o-2"))
    assert (await finished(runtime, job.id)).status is JobStatus.COMPLETED


async def test_a_declined_payment_fulfils_nothing(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    paid = await runtime.manager.enqueue(payment("o-3", card="pm_card_chargeDeclined"))
    run_worker(queues=ALL_QUEUES)
    assert (await finished(runtime, paid.job_id)).status is JobStatus.FAILED

    fulfilled = await runtime.manager.enqueue(fulfil("o-3"))
    job = await finished(runtime, fulfilled.job_id)
    assert job.status is JobStatus.FAILED and job.attempts == 1
    assert "order o-3 was not paid" in (job.last_error or "")
    await quiet(runtime)
    assert "ticket.mint" not in await completed_types(runtime)


async def test_the_same_order_fulfilled_twice_is_one_job(runtime: Runtime) -> None:
    first = await runtime.manager.enqueue(fulfil("o-4"))
    again = await runtime.manager.enqueue(fulfil("o-4"))
    assert again.job_id == first.job_id and not again.created
