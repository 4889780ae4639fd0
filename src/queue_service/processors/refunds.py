"""refund.process / refund.full / refund.partial: Stripe refunds checked
against what is left to refund, by our ledger and Stripe's list alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from queue_service.core.money import format_minor, refund_job_key
from queue_service.errors import PermanentError
from queue_service.observability.metrics import REFUND_AMOUNT, REFUNDS_PROCESSED
from queue_service.processors.base import Payload, processor
from queue_service.processors.context import JobContext
from queue_service.processors.money import (
    MONEY_OPTIONS,
    Amount,
    Email,
    Identifier,
    OrderLock,
    TransactionId,
    enqueue_follow_ups,
    idempotency_key,
    order_locked,
)

if TYPE_CHECKING:
    from queue_service.providers.payments import Refund
    from queue_service.store.money import RefundRecord

REFUND_OPTIONS: dict[str, Any] = {
    **MONEY_OPTIONS,
    "concurrency": 5,
    "lease_seconds": 30,
    "max_stalled": 3,
    "timeout_seconds": 30,
}


class RefundPayload(Payload):
    order_id: Identifier
    transaction_id: TransactionId
    reason: str | None = None
    customer_email: Email | None = None


class PartialRefundPayload(RefundPayload):
    amount: Amount


def full_key(p: RefundPayload) -> str:
    """SPEC §4: ``refund:{transaction_id}:{order_id}``."""
    return refund_job_key(p.transaction_id, p.order_id)


def partial_key(p: PartialRefundPayload) -> str:
    """The SPEC key plus the amount: two partial refunds of different amounts
    are two refunds; the same amount again is taken as a repeat of the same
    request. Two separate refunds of an equal amount need the caller's own
    idempotency keys (e.g. its refund request ids)."""
    return f"{full_key(p)}:partial:{p.amount}"


@processor("refund.process", payload=RefundPayload, derive_key=full_key, **REFUND_OPTIONS)
async def process_refund(ctx: JobContext, p: RefundPayload) -> Any:
    """Refund what is left of the payment."""
    return await _refund(ctx, p, None, await idempotency_key(ctx, "refund", full_key(p)))


@processor("refund.full", payload=RefundPayload, derive_key=full_key, **REFUND_OPTIONS)
async def full_refund(ctx: JobContext, p: RefundPayload) -> Any:
    """Refund what is left of the payment (the whole of it if nothing was)."""
    return await _refund(ctx, p, None, await idempotency_key(ctx, "refund", full_key(p)))


@processor("refund.partial", payload=PartialRefundPayload, derive_key=partial_key, **REFUND_OPTIONS)
async def partial_refund(ctx: JobContext, p: PartialRefundPayload) -> Any:
    """Refund ``amount``, if that much is left."""
    return await _refund(ctx, p, p.amount, await idempotency_key(ctx, "refund", partial_key(p)))


async def _refund(ctx: JobContext, p: RefundPayload, asked: int | None, key: str) -> Any:
    async with order_locked(ctx, p.order_id, key) as lock:
        return await _refund_locked(ctx, p, asked, key, lock)


async def _refund_locked(
    ctx: JobContext, p: RefundPayload, asked: int | None, key: str, lock: OrderLock
) -> Any:
    store, tenant = ctx.deps.store, ctx.job.tenant_id
    provider = ctx.deps.providers.payments
    mine = await store.money_refund_get(tenant, key)
    if mine is not None and mine.status == "succeeded":
        return await _complete(ctx, lock, p, key, mine.refund_id, mine.amount, mine.currency, False)
    async with ctx.deps.gate.slot("stripe", str(ctx.job.id)):
        payment = await provider.retrieve(p.transaction_id)
    async with ctx.deps.gate.slot("stripe", str(ctx.job.id)):
        listed = await provider.list_refunds(p.transaction_id)
    done = next((r for r in listed if r.metadata.get("idempotency_key") == key and r.counts), None)
    if done is not None:
        # Ours already went through (a crash after Stripe answered, however
        # long ago): record it, refund nothing more.
        if mine is None:
            await _begin(ctx, p, key, done.amount, done.currency)
        return await _complete(ctx, lock, p, key, done.id, done.amount, done.currency, True)
    ledger = await store.money_refunds_of_transaction(tenant, p.transaction_id)
    remaining = payment.amount_received - _refunded(listed, ledger, key)
    # A refund tried before keeps its amount: the remainder may have changed
    # since, but the request has not.
    amount = mine.amount if mine is not None else (asked if asked is not None else remaining)
    if remaining <= 0:
        raise PermanentError(
            f"nothing left to refund on {p.transaction_id} (remaining 0)", reason="already_refunded"
        )
    if amount > remaining:
        raise PermanentError(
            f"refund of {format_minor(amount, payment.currency)} exceeds the remaining"
            f" {format_minor(remaining, payment.currency)} on {p.transaction_id}",
            reason="exceeds_remaining",
        )
    await _begin(ctx, p, key, amount, payment.currency)
    async with ctx.deps.gate.slot("stripe", str(ctx.job.id)):
        try:
            refund = await provider.refund(
                transaction_id=p.transaction_id,
                amount=amount,
                metadata={
                    "tenant_id": tenant,
                    "order_id": p.order_id,
                    "idempotency_key": key,
                    "job_id": str(ctx.job.id),
                },
                idempotency_key=key,
            )
        except PermanentError as exc:
            await store.money_refund_settle(tenant, key, "failed", error=exc.reason)
            REFUNDS_PROCESSED.labels(payment.currency, "failed").inc()
            raise
    return await _complete(ctx, lock, p, key, refund.id, refund.amount, refund.currency, True)


def _refunded(listed: Sequence[Refund], ledger: Sequence[RefundRecord], key: str) -> int:
    """What no longer can be refunded: every live refund Stripe lists, plus
    those our ledger holds with an unknown outcome that Stripe does not list
    (counted, to be safe: their jobs will settle them)."""
    total = sum(r.amount for r in listed if r.counts)
    listed_ids = {r.id for r in listed}
    listed_keys = {r.metadata.get("idempotency_key") for r in listed}
    for row in ledger:
        if row.stripe_key == key or row.status == "failed":
            continue
        if row.refund_id in listed_ids or row.stripe_key in listed_keys:
            continue
        total += row.amount
    return total


async def _begin(ctx: JobContext, p: RefundPayload, key: str, amount: int, currency: str) -> None:
    await ctx.deps.store.money_refund_begin(
        tenant=ctx.job.tenant_id,
        key=key,
        order_id=p.order_id,
        transaction_id=p.transaction_id,
        job_type=ctx.job.type,
        amount=amount,
        currency=currency,
        job_id=ctx.job.id,
    )


async def _complete(
    ctx: JobContext,
    lock: OrderLock,
    p: RefundPayload,
    key: str,
    refund_id: str | None,
    amount: int,
    currency: str,
    notify: bool,
) -> Any:
    """Settle the ledger row, release the lock and (for a refund made by this
    logical request) enqueue the confirmations, in the completing transaction."""
    result = {
        "status": "refunded",
        "order_id": p.order_id,
        "transaction_id": p.transaction_id,
        "refund_id": refund_id,
        "amount": amount,
        "currency": currency,
    }
    async with ctx.transaction() as tx:
        await ctx.deps.store.money_refund_settle(
            ctx.job.tenant_id, key, "succeeded", refund_id=refund_id, conn=tx.conn
        )
        await lock.release(tx)
        refused: list[str] = []
        if notify:
            refused = await enqueue_follow_ups(
                ctx,
                tx,
                key=key,
                event="refund.succeeded",
                payload={
                    **result,
                    "reason": p.reason,
                    "amount_display": format_minor(amount, currency),
                },
                email=p.customer_email,
                template="refund_confirmation",
            )
        tx.result = {**result, "follow_ups_refused": refused} if refused else result
    ctx.log.info("refund recorded", order_id=p.order_id, refund=refund_id)
    if notify:  # not when an earlier job of the same request recorded it
        REFUNDS_PROCESSED.labels(currency, "succeeded").inc()
        REFUND_AMOUNT.labels(currency).inc(amount)
    ctx.log.debug("refund amount", amount=amount, currency=currency)
    return None


PROCESSORS: list[object] = [process_refund, full_refund, partial_refund]
