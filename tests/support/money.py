"""Money-test helpers: payment and refund requests, ledger and follow-up readers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from queue_service.core.jobs import EnqueueRequest, JobStatus
from queue_service.runtime.service import Runtime
from tests.support.waiting import eventually

TEST_STRIPE_KEY = "sk_test_queue_service_fake"


async def rows(runtime: Runtime, query: Any, params: dict[str, Any] | None = None) -> list[Any]:
    async with runtime.db.connection() as conn:
        cur = await conn.execute(query, params or {})
        return await cur.fetchall()


async def follow_ups(runtime: Runtime) -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of every email / webhook job, live or finished."""
    return [
        (r[0], r[1])
        for r in await rows(
            runtime,
            "SELECT type, data FROM jobs WHERE queue = 'communication'"
            " UNION ALL SELECT type, data FROM finished_jobs WHERE queue = 'communication'"
            " ORDER BY 1",
        )
    ]


async def payment_ledger(runtime: Runtime, order_id: str) -> list[tuple[Any, ...]]:
    """(status, amount, payment_intent_id) of an order's payment rows."""
    return await rows(
        runtime,
        "SELECT status, amount, payment_intent_id FROM money_payments WHERE order_id = %(o)s"
        " ORDER BY first_attempt_at",
        {"o": order_id},
    )


def payment(
    order_id: str = "o1",
    amount: int = 1050,
    method: str = "pm_card_visa",
    *,
    job_type: str = "payment.process",
    email: str | None = "buyer@example.com",
    **fields: Any,
) -> EnqueueRequest:
    data: dict[str, Any] = {
        "order_id": order_id,
        "user_id": "u1",
        "amount": amount,
        "currency": "USD",
        "payment_method_id": method,
    }
    if email:
        data["customer_email"] = email
    return EnqueueRequest(type=job_type, data=data, tenant_id="t1", **fields)


def refund(
    transaction_id: str,
    order_id: str = "o1",
    amount: int | None = None,
    *,
    job_type: str | None = None,
    **fields: Any,
) -> EnqueueRequest:
    data: dict[str, Any] = {"order_id": order_id, "transaction_id": transaction_id}
    if amount is not None:
        data["amount"] = amount
    kind = job_type or ("refund.partial" if amount is not None else "refund.process")
    return EnqueueRequest(type=kind, data=data, tenant_id="t1", **fields)


def finished(runtime: Runtime, job_id: UUID) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        status = (await runtime.manager.get(job_id)).status
        return status in (JobStatus.COMPLETED, JobStatus.FAILED)

    return probe


async def run_to_end(runtime: Runtime, job_id: UUID, timeout: float = 15.0) -> Any:
    await eventually(finished(runtime, job_id), timeout=timeout, what=f"job {job_id} to finish")
    return await runtime.manager.get(job_id)
