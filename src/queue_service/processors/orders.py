"""order.fulfill: once the order's payment has gone through, enqueue its
ticket mints, the order webhook and the analytics event, in one transaction.

Fulfilment follows the money: it waits (snoozes, no attempt used) while the
order's payment is pending or not yet run, and fails for good when the
payment was declined or never arrives, so no ticket is minted for an order
that was not paid (docs/decisions/0011-order-fulfilment.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints, field_validator

from queue_service.core.base58 import is_solana_address
from queue_service.core.jobs import EnqueueRequest, Priority
from queue_service.errors import PermanentError, Snooze
from queue_service.processors.base import Payload, processor
from queue_service.processors.context import JobContext, JobTransaction
from queue_service.processors.webhooks import platform_event

Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]
Email = Annotated[str, StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
MAX_TICKETS = 100
# Waiting for the payment: 1, 2, 4 ... 60 s between looks, for this long in all.
PAYMENT_WAIT_SECONDS = 3600.0
PAYMENT_POLL_CAP_SECONDS = 60.0


class Ticket(Payload):
    ticket_id: Identifier
    event_id: Identifier


class FulfilPayload(Payload):
    order_id: Identifier
    user_id: Identifier
    tickets: list[Ticket] = Field(min_length=1, max_length=MAX_TICKETS)
    customer_email: Email
    # Without a wallet the tickets are not minted (the platform issues them itself).
    wallet_address: str | None = Field(default=None, max_length=64)

    @field_validator("wallet_address")
    @classmethod
    def _solana_address(cls, value: str | None) -> str | None:
        if value is not None and not is_solana_address(value):
            raise ValueError("wallet_address is not a Solana address (base58, 32 bytes)")
        return value


def fulfil_key(p: FulfilPayload) -> str:
    return f"fulfil:{p.order_id}"


def payment_wait(snoozes: int) -> tuple[float, float]:
    """The next wait after ``snoozes`` earlier ones, and the time waited so far."""
    waits = [min(PAYMENT_POLL_CAP_SECONDS, 2.0**n) for n in range(snoozes + 1)]
    return waits[-1], sum(waits[:-1])


@processor(
    "order.fulfill",
    payload=FulfilPayload,
    queue="money",
    priority=Priority.HIGH,
    concurrency=10,
    lease_seconds=30,
    max_stalled=3,
    timeout_seconds=30,
    derive_key=fulfil_key,
    idempotency_ttl_seconds=7 * 86_400,
)
async def fulfil_order(ctx: JobContext, p: FulfilPayload) -> None:
    """Everything it enqueues carries a key derived from the order and ticket,
    so a retry after a lost commit cannot enqueue anything twice."""
    await _wait_for_payment(ctx, p)
    async with ctx.transaction() as tx:
        minted = 0
        if p.wallet_address is not None:
            for ticket in p.tickets:
                await _follow(
                    ctx,
                    tx,
                    "ticket.mint",
                    {
                        "ticket_id": ticket.ticket_id,
                        "user_id": p.user_id,
                        "wallet_address": p.wallet_address,
                        "event_id": ticket.event_id,
                        "customer_email": p.customer_email,
                    },
                    key=f"mint:{ticket.ticket_id}:{p.user_id}",
                )
                minted += 1
        facts = {
            "order_id": p.order_id,
            "tickets": [t.model_dump() for t in p.tickets],
            "minting": minted,
        }
        await _follow(
            ctx,
            tx,
            "webhook.process",
            platform_event("order.fulfilled", facts),
            key=f"webhook:order.fulfilled:{p.order_id}",
        )
        await _follow(
            ctx,
            tx,
            "analytics.track",
            {
                "event": "order_fulfilled",
                "properties": {"order_id": p.order_id, "tickets": len(p.tickets)},
                "user_id": p.user_id,
            },
            key=f"analytics:order_fulfilled:{p.order_id}",
        )
        tx.result = {"order_id": p.order_id, "tickets": len(p.tickets), "mints": minted}


async def _wait_for_payment(ctx: JobContext, p: FulfilPayload) -> None:
    payments = await ctx.deps.store.money_payments_of_order(ctx.job.tenant_id, p.order_id)
    if any(record.paid for record in payments):
        return
    if payments and all(record.status == "failed" for record in payments):
        raise PermanentError(
            f"order {p.order_id} was not paid: its payment failed; nothing was fulfilled",
            reason="payment_failed",
        )
    history = await ctx.deps.store.job_events(ctx.job.id)
    wait, waited = payment_wait(sum(e.event == "snoozed" for e in history))
    if waited >= PAYMENT_WAIT_SECONDS:
        raise PermanentError(
            f"order {p.order_id} has no successful payment after {waited:.0f} s;"
            " enqueue its payment.process first",
            reason="payment_missing",
        )
    state = "pending" if payments else "not yet run"
    raise Snooze(wait, f"waiting for the payment of order {p.order_id} ({state})")


async def _follow(
    ctx: JobContext, tx: JobTransaction, job_type: str, data: dict[str, Any], *, key: str
) -> None:
    job = ctx.job
    await tx.enqueue(
        EnqueueRequest(
            type=job_type,
            data=data,
            tenant_id=job.tenant_id,
            idempotency_key=key,
            created_by=job.type,
            request_id=job.request_id,
            trace_context=job.trace_context,
        )
    )


PROCESSORS: list[object] = [fulfil_order]
