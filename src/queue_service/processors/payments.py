"""payment.process / payment.retry / payment.capture: Stripe PaymentIntents,
exactly once in effect per order (docs/money-safety.md)."""

from __future__ import annotations

from typing import Any

from queue_service.core.money import format_minor, payment_job_key
from queue_service.errors import PermanentError
from queue_service.observability.metrics import PAYMENT_AMOUNT, PAYMENTS_PROCESSED
from queue_service.processors.base import Payload, processor
from queue_service.processors.context import JobContext
from queue_service.processors.money import (
    MONEY_OPTIONS,
    PROVIDER_KEY_WINDOW_SECONDS,
    Amount,
    Currency,
    Email,
    Identifier,
    OrderLock,
    PaymentIntentId,
    enqueue_follow_ups,
    idempotency_key,
    order_locked,
)
from queue_service.providers.payments import Payment
from queue_service.store.money import PaymentRecord


class PaymentPayload(Payload):
    order_id: Identifier
    user_id: Identifier
    amount: Amount
    currency: Currency
    payment_method_id: Identifier
    customer_email: Email | None = None


class CapturePayload(Payload):
    payment_intent_id: PaymentIntentId
    order_id: Identifier
    amount: Amount | None = None


def process_key(p: PaymentPayload) -> str:
    """SPEC §4: ``payment:{user_id}:{order_id}:{amount}``."""
    return payment_job_key(p.user_id, p.order_id, p.amount)


def retry_key(p: PaymentPayload) -> str:
    """A retry is a new try (often with another card): its own key, so it
    neither collides with the payment.process job (same data, other type: a
    409) nor replays the declined answer Stripe stored for that job's key."""
    return f"{process_key(p)}:retry:{p.payment_method_id}"


def capture_key(p: CapturePayload) -> str:
    return f"capture:{p.payment_intent_id}:{p.amount if p.amount is not None else 'full'}"


@processor(
    "payment.process",
    payload=PaymentPayload,
    derive_key=process_key,
    concurrency=5,
    lease_seconds=30,
    max_stalled=3,
    timeout_seconds=30,
    **MONEY_OPTIONS,
)
async def process_payment(ctx: JobContext, p: PaymentPayload) -> Any:
    """Create and confirm a PaymentIntent for the order, once."""
    return await _pay(ctx, p, await idempotency_key(ctx, "payment", process_key(p)))


@processor(
    "payment.retry",
    payload=PaymentPayload,
    derive_key=retry_key,
    concurrency=3,
    lease_seconds=60,
    max_stalled=2,
    timeout_seconds=30,
    **MONEY_OPTIONS,
)
async def retry_payment(ctx: JobContext, p: PaymentPayload) -> Any:
    """Try an order's payment again; never charges an order already paid."""
    return await _pay(ctx, p, await idempotency_key(ctx, "payment", retry_key(p)))


async def _pay(ctx: JobContext, p: PaymentPayload, key: str) -> Any:
    async with order_locked(ctx, p.order_id, key) as lock:
        return await _pay_locked(ctx, p, key, lock)


async def _pay_locked(ctx: JobContext, p: PaymentPayload, key: str, lock: OrderLock) -> Any:
    store, tenant = ctx.deps.store, ctx.job.tenant_id
    records = await store.money_payments_of_order(tenant, p.order_id)
    paid = next((r for r in records if r.paid), None)
    if paid is not None:
        return await _already_paid(ctx, p, paid, lock)
    row = await store.money_payment_begin(
        tenant=tenant,
        key=key,
        order_id=p.order_id,
        user_id=p.user_id,
        job_type=ctx.job.type,
        amount=p.amount,
        currency=p.currency,
        job_id=ctx.job.id,
    )
    others_unknown = any(r.status == "pending" and r.stripe_key != key for r in records)
    intent: Payment | None = None
    if row.age_seconds > PROVIDER_KEY_WINDOW_SECONDS or others_unknown:
        # Stripe may have forgotten our key, or another attempt at this order
        # ended without a known outcome: ask Stripe what exists first.
        intent = await _reconcile(ctx, p, key)
    if intent is None:
        async with ctx.deps.gate.slot("stripe", str(ctx.job.id)):
            try:
                intent = await ctx.deps.providers.payments.create_and_confirm(
                    amount=p.amount,
                    currency=p.currency,
                    payment_method=p.payment_method_id,
                    metadata=_metadata(ctx, p, key),
                    idempotency_key=key,
                )
            except PermanentError as exc:
                await store.money_payment_settle(tenant, key, "failed", error=exc.reason)
                PAYMENTS_PROCESSED.labels(p.currency, "failed").inc()
                raise
    if not intent.paid:
        await store.money_payment_settle(
            tenant, key, "failed", intent=intent.id, error=intent.status
        )
        PAYMENTS_PROCESSED.labels(p.currency, "failed").inc()
        raise PermanentError(
            f"payment {intent.id} ended {intent.status}", reason=f"payment_{intent.status}"
        )
    return await _record_paid(ctx, p, key, intent, lock)


async def _reconcile(ctx: JobContext, p: PaymentPayload, key: str) -> Payment | None:
    """A PaymentIntent Stripe already holds for this order (ours first), if any."""
    async with ctx.deps.gate.slot("stripe", str(ctx.job.id)):
        found = await ctx.deps.providers.payments.search_payments(
            {"tenant_id": ctx.job.tenant_id, "order_id": p.order_id}
        )
    live = [i for i in found if i.paid]
    live.sort(key=lambda i: i.metadata.get("idempotency_key") != key)
    if live:
        ctx.log.info(
            "payment reconciled with stripe", order_id=p.order_id, payment_intent=live[0].id
        )
    return live[0] if live else None


async def _record_paid(
    ctx: JobContext, p: PaymentPayload, key: str, intent: Payment, lock: OrderLock
) -> Any:
    status = "authorized" if intent.status == "requires_capture" else "succeeded"
    result = {
        "status": status,
        "order_id": p.order_id,
        "payment_intent_id": intent.id,
        "charge_id": intent.charge_id,
        "amount": p.amount,
        "currency": p.currency,
    }
    event_payload = {
        **result,
        "user_id": p.user_id,
        "amount_display": format_minor(p.amount, p.currency),
    }
    async with ctx.transaction() as tx:
        await ctx.deps.store.money_payment_settle(
            ctx.job.tenant_id, key, status, intent=intent.id, charge=intent.charge_id, conn=tx.conn
        )
        await lock.release(tx)
        refused = await enqueue_follow_ups(
            ctx,
            tx,
            key=key,
            event=f"payment.{status}",
            payload=event_payload,
            email=p.customer_email,
            template="payment_confirmation",
        )
        tx.result = {**result, "follow_ups_refused": refused} if refused else result
    ctx.log.info("payment recorded", order_id=p.order_id, payment_intent=intent.id, status=status)
    PAYMENTS_PROCESSED.labels(p.currency, status).inc()
    if status == "succeeded":  # an authorization moves money at its capture
        PAYMENT_AMOUNT.labels(p.currency).inc(p.amount)
    ctx.log.debug("payment amount", amount=p.amount, currency=p.currency)
    return None


async def _already_paid(
    ctx: JobContext, p: PaymentPayload, paid: PaymentRecord, lock: OrderLock
) -> Any:
    """The order was paid by an earlier job: no charge, no second confirmation."""
    if (paid.amount, paid.currency) != (p.amount, p.currency):
        raise PermanentError(
            f"order {p.order_id} is already paid ({paid.payment_intent_id}) with another amount",
            reason="already_paid",
        )
    async with ctx.transaction() as tx:
        await lock.release(tx)
        tx.result = {
            "status": "already_paid",
            "order_id": p.order_id,
            "payment_intent_id": paid.payment_intent_id,
            "charge_id": paid.charge_id,
        }
    ctx.log.info("order already paid", order_id=p.order_id, payment_intent=paid.payment_intent_id)
    return None


def _metadata(ctx: JobContext, p: PaymentPayload, key: str) -> dict[str, str]:
    return {
        "tenant_id": ctx.job.tenant_id,
        "order_id": p.order_id,
        "user_id": p.user_id,
        "idempotency_key": key,
        "job_id": str(ctx.job.id),
    }


@processor(
    "payment.capture",
    payload=CapturePayload,
    derive_key=capture_key,
    concurrency=5,
    lease_seconds=30,
    max_stalled=3,
    timeout_seconds=30,
    **MONEY_OPTIONS,
)
async def capture_payment(ctx: JobContext, p: CapturePayload) -> Any:
    """Capture an authorized PaymentIntent; already captured counts as done."""
    key = await idempotency_key(ctx, "capture", capture_key(p))
    async with order_locked(ctx, p.order_id, key) as lock:
        return await _capture_locked(ctx, p, key, lock)


async def _capture_locked(ctx: JobContext, p: CapturePayload, key: str, lock: OrderLock) -> Any:
    provider = ctx.deps.providers.payments
    async with ctx.deps.gate.slot("stripe", str(ctx.job.id)):
        intent = await provider.retrieve(p.payment_intent_id)
    if intent.status == "requires_capture":
        async with ctx.deps.gate.slot("stripe", str(ctx.job.id)):
            intent = await provider.capture(
                p.payment_intent_id, amount=p.amount, idempotency_key=key
            )
    if intent.status != "succeeded":
        raise PermanentError(
            f"payment {intent.id} is {intent.status}, not capturable",
            reason="invalid_request",
        )
    result = {
        "status": "captured",
        "order_id": p.order_id,
        "payment_intent_id": intent.id,
        "amount": intent.amount_received,
        "currency": intent.currency,
    }
    async with ctx.transaction() as tx:
        await ctx.deps.store.money_payment_captured(ctx.job.tenant_id, intent.id, conn=tx.conn)
        await lock.release(tx)
        refused = await enqueue_follow_ups(
            ctx,
            tx,
            key=key,
            event="payment.captured",
            payload=result,
            email=None,
            template="payment_confirmation",
        )
        tx.result = {**result, "follow_ups_refused": refused} if refused else result
    ctx.log.info("payment captured", order_id=p.order_id, payment_intent=intent.id)
    PAYMENT_AMOUNT.labels(intent.currency).inc(intent.amount_received)
    return None


PROCESSORS: list[object] = [process_payment, retry_payment, capture_payment]
