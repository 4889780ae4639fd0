"""Statements of money safety: the payment and refund ledgers and the
per-order lock (money.sql; docs/money-safety.md)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from queue_service.store.db import Conn, Database
from queue_service.store.queries import Q


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    stripe_key: str
    order_id: str
    status: str  # pending | succeeded | authorized | failed
    amount: int
    currency: str
    payment_intent_id: str | None
    charge_id: str | None
    age_seconds: float  # since the first attempt under this key

    @property
    def paid(self) -> bool:
        return self.status in ("succeeded", "authorized")


@dataclass(frozen=True, slots=True)
class RefundRecord:
    stripe_key: str
    status: str  # pending | succeeded | failed
    amount: int
    currency: str
    refund_id: str | None
    age_seconds: float


@dataclass(frozen=True, slots=True)
class LockHolder:
    job_id: UUID
    job_type: str
    remaining_seconds: float


class MoneyStore:
    """Ledger rows are written before a provider call and settled in the
    transaction that completes the job (``conn=tx.conn``)."""

    db: Database

    async def money_logical_key(self, job_id: UUID) -> str | None:
        """The job's idempotency key, or that of the job it replays."""
        async with self.db.connection() as c:
            cur = await c.execute(Q["money_logical_key"], {"job_id": job_id})
            row = await cur.fetchone()
        return row[0] if row else None

    async def money_lock_take(
        self,
        tenant: str,
        order_id: str,
        holder: str,
        job_id: UUID,
        job_type: str,
        seconds: float,
    ) -> LockHolder | None:
        """None when ``holder`` holds the order's lock now; else who does."""
        params = {
            "tenant": tenant,
            "order_id": order_id,
            "holder": holder,
            "job_id": job_id,
            "job_type": job_type,
            "seconds": seconds,
        }
        async with self.db.connection() as c:
            cur = await c.execute(Q["money_lock_take"], params)
            if await cur.fetchone() is not None:
                return None
            cur = await c.execute(Q["money_lock_holder"], params)
            row = await cur.fetchone()
        # Released between the two statements: report a moment's wait.
        return LockHolder(*row) if row else LockHolder(job_id, job_type, 0.0)

    async def money_lock_release(
        self, tenant: str, order_id: str, holder: str, conn: Conn | None = None
    ) -> None:
        async with self.db.connection(conn) as c:
            await c.execute(
                Q["money_lock_release"], {"tenant": tenant, "order_id": order_id, "holder": holder}
            )

    async def money_payment_begin(
        self,
        *,
        tenant: str,
        key: str,
        order_id: str,
        user_id: str | None,
        job_type: str,
        amount: int,
        currency: str,
        job_id: UUID,
    ) -> PaymentRecord:
        params = {
            "tenant": tenant,
            "key": key,
            "order_id": order_id,
            "user_id": user_id,
            "job_type": job_type,
            "amount": amount,
            "currency": currency,
            "job_id": job_id,
        }
        async with self.db.connection() as c:
            cur = await c.execute(Q["money_payment_begin"], params)
            row = await cur.fetchone()
        assert row is not None  # an upsert always returns its row
        return PaymentRecord(*row)

    async def money_payments_of_order(self, tenant: str, order_id: str) -> list[PaymentRecord]:
        async with self.db.connection() as c:
            cur = await c.execute(
                Q["money_payments_of_order"], {"tenant": tenant, "order_id": order_id}
            )
            return [PaymentRecord(*row) for row in await cur.fetchall()]

    async def money_payment_settle(
        self,
        tenant: str,
        key: str,
        status: str,
        *,
        intent: str | None = None,
        charge: str | None = None,
        error: str | None = None,
        conn: Conn | None = None,
    ) -> None:
        params = {
            "tenant": tenant,
            "key": key,
            "status": status,
            "intent": intent,
            "charge": charge,
            "error": error,
        }
        async with self.db.connection(conn) as c:
            await c.execute(Q["money_payment_settle"], params)

    async def money_payment_captured(
        self, tenant: str, payment_intent_id: str, conn: Conn | None = None
    ) -> None:
        async with self.db.connection(conn) as c:
            await c.execute(
                Q["money_payment_captured"], {"tenant": tenant, "intent": payment_intent_id}
            )

    async def money_refund_begin(
        self,
        *,
        tenant: str,
        key: str,
        order_id: str,
        transaction_id: str,
        job_type: str,
        amount: int,
        currency: str,
        job_id: UUID,
    ) -> RefundRecord:
        params = {
            "tenant": tenant,
            "key": key,
            "order_id": order_id,
            "transaction_id": transaction_id,
            "job_type": job_type,
            "amount": amount,
            "currency": currency,
            "job_id": job_id,
        }
        async with self.db.connection() as c:
            cur = await c.execute(Q["money_refund_begin"], params)
            row = await cur.fetchone()
        assert row is not None
        return RefundRecord(*row)

    async def money_refund_get(self, tenant: str, key: str) -> RefundRecord | None:
        async with self.db.connection() as c:
            cur = await c.execute(Q["money_refund_get"], {"tenant": tenant, "key": key})
            row = await cur.fetchone()
        return RefundRecord(*row) if row else None

    async def money_refunds_of_transaction(
        self, tenant: str, transaction_id: str
    ) -> list[RefundRecord]:
        async with self.db.connection() as c:
            cur = await c.execute(
                Q["money_refunds_of_transaction"],
                {"tenant": tenant, "transaction_id": transaction_id},
            )
            return [RefundRecord(*row) for row in await cur.fetchall()]

    async def money_refund_settle(
        self,
        tenant: str,
        key: str,
        status: str,
        *,
        refund_id: str | None = None,
        error: str | None = None,
        conn: Conn | None = None,
    ) -> None:
        params = {
            "tenant": tenant,
            "key": key,
            "status": status,
            "refund_id": refund_id,
            "error": error,
        }
        async with self.db.connection(conn) as c:
            await c.execute(Q["money_refund_settle"], params)
