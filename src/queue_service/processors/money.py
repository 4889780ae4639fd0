"""What payment and refund processors share: payload field types, the SPEC §2/§3
options, the per-order lock, the provider idempotency key, and follow-ups."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

from queue_service.core.jobs import EnqueueRequest, Priority
from queue_service.core.money import currency_code, provider_key
from queue_service.core.retry import MONEY_RETRY
from queue_service.errors import (
    InvalidPayloadError,
    PermanentError,
    Snooze,
    UnknownJobTypeError,
)
from queue_service.processors.context import JobContext, JobTransaction
from queue_service.processors.webhooks import platform_event

# Integer minor units (cents), strictly: 10.5 or "1050" is a malformed request.
Amount = Annotated[int, Field(strict=True, gt=0, le=999_999_999_999)]
Currency = Annotated[
    str, StringConstraints(min_length=3, max_length=3), AfterValidator(currency_code)
]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
# As strict as email.send's own check, so a payment is refused at enqueue
# rather than its confirmation after the money moved.
Email = Annotated[
    str,
    StringConstraints(
        max_length=254, pattern=r"^[^\s@<>()\[\],;:\"]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$"
    ),
]
# A PaymentIntent (pi_) or a charge (ch_, py_): what a refund can name.
TransactionId = Annotated[str, StringConstraints(pattern=r"^(pi|ch|py)_[A-Za-z0-9_]{1,200}$")]
PaymentIntentId = Annotated[str, StringConstraints(pattern=r"^pi_[A-Za-z0-9_]{1,200}$")]

QUEUE = "money"
# SPEC §2 and §3: payments and refunds at priority 1, five exponential attempts
# (1 s .. 60 s, jittered); their idempotency keys live 7 days (§4).
MONEY_OPTIONS: dict[str, Any] = {
    "queue": QUEUE,
    "priority": Priority.CRITICAL,
    "retry": MONEY_RETRY,
    "idempotency_ttl_seconds": 7 * 86_400,
}

# How long an order's lock outlives a silent holder: the job timeout (30 s)
# plus the longest first backoffs, so the holder's own retry finds it still
# held; a rescued or retried holder takes it back at once (same job id).
LOCK_SECONDS = 90.0
# A job that finds the order locked snoozes at most this long at a time, so it
# follows soon after the holder finishes.
LOCK_POLL_SECONDS = 1.0
# Stripe keeps an idempotency key at least 24 h. An attempt first made longer
# ago than this is reconciled by a metadata search before any new call.
PROVIDER_KEY_WINDOW_SECONDS = 23 * 3600.0


@dataclass(frozen=True, slots=True)
class OrderLock:
    """The order's money lock, held by one logical operation (its provider key)."""

    ctx: JobContext
    order_id: str
    holder: str

    async def release(self, tx: JobTransaction | None = None) -> None:
        """Release it, in ``tx`` (the completing transaction) when given."""
        await self.ctx.deps.store.money_lock_release(
            self.ctx.job.tenant_id, self.order_id, self.holder, conn=tx.conn if tx else None
        )


@asynccontextmanager
async def order_locked(ctx: JobContext, order_id: str, holder: str) -> AsyncIterator[OrderLock]:
    """Hold the order's money lock, or snooze (no attempt used) while another
    payment or refund of the order is in flight.

    The body releases it in its completing transaction. A refusal or a snooze
    releases it here (nothing is in flight); a retryable failure keeps it (the
    outcome may be unknown and this operation's retry takes it back) unless
    no attempt is left.
    """
    job = ctx.job
    busy = await ctx.deps.store.money_lock_take(
        job.tenant_id, order_id, holder, job.id, job.type, LOCK_SECONDS
    )
    if busy is not None:
        raise Snooze(
            min(max(busy.remaining_seconds, 0.2), LOCK_POLL_SECONDS),
            f"order {order_id} is locked by {busy.job_type} job {busy.job_id}",
        )
    lock = OrderLock(ctx, order_id, holder)
    try:
        yield lock
    except (PermanentError, Snooze):
        await lock.release()
        raise
    except Exception:
        if ctx.is_last_attempt:
            await lock.release()
        raise


async def idempotency_key(ctx: JobContext, family: str, derived: str) -> str:
    """The provider Idempotency-Key of this job: from its idempotency key, or
    the one of the job a DLQ replay stands for, else from ``derived`` (the
    payload's SPEC §4 key, what the job's key is when its caller gave none).
    The same on every retry, rescue and replay."""
    logical = await ctx.deps.store.money_logical_key(ctx.job.id) or derived
    return provider_key(ctx.job.tenant_id, family, logical)


async def enqueue_follow_ups(
    ctx: JobContext,
    tx: JobTransaction,
    *,
    key: str,
    event: str,
    payload: dict[str, Any],
    email: str | None,
    template: str,
) -> list[str]:
    """The confirmation email (when there is an address) and the webhook,
    inside the completing transaction: they exist only if the job completes.
    Their keys come from the provider key, so no path sends them twice.
    Returns the types of follow-ups that were refused (invalid, unknown)."""
    job = ctx.job
    common: dict[str, Any] = {
        "tenant_id": job.tenant_id,
        "created_by": job.type,
        "request_id": job.request_id,
        "trace_context": job.trace_context,
    }
    requests = []
    if email:
        context = {k: payload[k] for k in ("order_id", "amount", "currency")}
        requests.append(
            EnqueueRequest(
                type="email.send",
                data={"to": email, "template": template, "context": context},
                idempotency_key=f"email:{template}:{key}",
                **common,
            )
        )
    requests.append(
        EnqueueRequest(
            type="webhook.process",
            data=platform_event(event, payload),
            idempotency_key=f"webhook:{event}:{key}",
            **common,
        )
    )
    refused: list[str] = []
    for request in requests:
        try:
            await tx.enqueue(request)
        except (InvalidPayloadError, UnknownJobTypeError) as exc:
            # Refused before any SQL (the transaction is intact): the money
            # has moved, so its record must still commit; say so instead.
            ctx.log.error("follow-up refused", follow_up=request.type, error=str(exc))
            refused.append(request.type)
    return refused
