"""The Stripe adapter: the stripe SDK on its async HTTPX client, its errors
mapped to permanent / retryable / snooze (docs/providers/stripe.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

import stripe
import structlog
from pydantic import SecretStr

from queue_service.errors import JobError, PermanentError, RetryableError, Snooze
from queue_service.providers.http_failures import (
    DEFAULT_RATE_LIMIT_SNOOZE_SECONDS,
    retry_after_seconds,
)
from queue_service.providers.payments import Payment, Refund, transaction_field

log = structlog.get_logger("queue_service.providers.stripe")

T = TypeVar("T")

# Below the job timeout (30 s), so a hung call ends as a retryable error the
# queue schedules, not as a timeout that may leave the outcome unrecorded.
CALL_TIMEOUT_SECONDS = 20.0
# A 409 means a request with the same key is still running at Stripe: ask
# again shortly and Stripe replays its answer.
IN_PROGRESS_RETRY_SECONDS = 2.0


class StripeProvider:
    """PaymentProvider on Stripe's API. The SDK's own retries are off
    (max_network_retries=0): the queue retries, with the same Idempotency-Key."""

    name = "stripe"
    is_development = False

    def __init__(self, secret_key: SecretStr, *, api_base: str) -> None:
        self._http = stripe.HTTPXClient(timeout=CALL_TIMEOUT_SECONDS)
        self._client = stripe.StripeClient(
            secret_key.get_secret_value(),
            base_addresses={"api": api_base.rstrip("/")},
            http_client=self._http,
            max_network_retries=0,
        )
        log.info("payment provider: stripe", api_base=api_base)

    async def create_and_confirm(
        self,
        *,
        amount: int,
        currency: str,
        payment_method: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
        capture: bool = True,
    ) -> Payment:
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "payment_method": payment_method,
            "confirm": True,
            "off_session": True,
            "metadata": dict(metadata),
        }
        if not capture:
            params["capture_method"] = "manual"
        intent = await _call(
            self._client.v1.payment_intents.create_async(
                params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        )
        return _payment(intent.to_dict())

    async def capture(
        self, payment_intent_id: str, *, amount: int | None, idempotency_key: str
    ) -> Payment:
        params: dict[str, Any] = {} if amount is None else {"amount_to_capture": amount}
        intent = await _call(
            self._client.v1.payment_intents.capture_async(
                payment_intent_id,
                params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        )
        return _payment(intent.to_dict())

    async def retrieve(self, transaction_id: str) -> Payment:
        if transaction_field(transaction_id) == "payment_intent":
            intent = await _call(self._client.v1.payment_intents.retrieve_async(transaction_id))
            return _payment(intent.to_dict())
        charge = (await _call(self._client.v1.charges.retrieve_async(transaction_id))).to_dict()
        captured = int(charge["amount_captured"]) if charge.get("captured") else 0
        return Payment(
            id=charge["id"],
            status=str(charge.get("status")),
            amount=int(charge["amount"]),
            amount_received=captured,
            currency=str(charge["currency"]).upper(),
            charge_id=charge["id"],
            metadata=dict(charge.get("metadata") or {}),
        )

    async def refund(
        self,
        *,
        transaction_id: str,
        amount: int,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> Refund:
        params: dict[str, Any] = {
            transaction_field(transaction_id): transaction_id,
            "amount": amount,
            "metadata": dict(metadata),
        }
        refund = await _call(
            self._client.v1.refunds.create_async(
                params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        )
        return _refund(refund.to_dict())

    async def list_refunds(self, transaction_id: str) -> list[Refund]:
        params: dict[str, Any] = {transaction_field(transaction_id): transaction_id, "limit": 100}
        refunds: list[Refund] = []
        while True:
            page = await _call(self._client.v1.refunds.list_async(params))  # type: ignore[arg-type]
            batch = [_refund(r.to_dict()) for r in page.data]
            refunds += batch
            if not page.has_more or not batch:
                return refunds
            params["starting_after"] = batch[-1].id

    async def search_payments(self, metadata: Mapping[str, str]) -> list[Payment]:
        query = " AND ".join(
            f"metadata['{_quote(k)}']:'{_quote(v)}'" for k, v in sorted(metadata.items())
        )
        params: dict[str, Any] = {"query": query, "limit": 100}
        found: list[Payment] = []
        while True:
            page = await _call(
                self._client.v1.payment_intents.search_async(params)  # type: ignore[arg-type]
            )
            found += [_payment(p.to_dict()) for p in page.data]
            if not page.has_more or not page.next_page:
                return found
            params["page"] = page.next_page

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]


def _quote(value: str) -> str:
    # Stripe's search language escapes quotes with a backslash.
    return value.replace("\\", "\\\\").replace("'", "\\'")


async def _call(request: Awaitable[T]) -> T:
    try:
        return await request
    except stripe.StripeError as exc:
        raise map_stripe_error(exc) from None


def map_stripe_error(exc: stripe.StripeError) -> JobError:
    """The job error a Stripe failure means (docs/providers/stripe.md's table)."""
    err = exc.error
    code = (err.code if err else None) or exc.code
    detail = f"{code}" if code else type(exc).__name__
    if isinstance(exc, stripe.CardError):
        decline = err.decline_code if err else None
        suffix = f", {decline}" if decline else ""
        return PermanentError(f"card declined ({detail}{suffix})", reason="card_declined")
    if isinstance(exc, stripe.RateLimitError):
        delay = retry_after_seconds(exc.headers or {})
        return Snooze(
            DEFAULT_RATE_LIMIT_SNOOZE_SECONDS if delay is None else delay,
            "stripe rate limited",
        )
    if isinstance(exc, stripe.IdempotencyError):
        # The same key with different parameters: a bug or a changed payload,
        # never fixed by trying again.
        return PermanentError(
            f"stripe refused a reused idempotency key ({detail})", reason="idempotency_conflict"
        )
    if isinstance(exc, stripe.AuthenticationError):
        return PermanentError("stripe rejected the API key", reason="authentication")
    if isinstance(exc, stripe.PermissionError):
        return PermanentError("stripe forbade the call", reason="forbidden")
    if isinstance(exc, stripe.InvalidRequestError):
        if exc.http_status == 404 or code == "resource_missing":
            return PermanentError(f"stripe: no such object ({detail})", reason="not_found")
        return PermanentError(f"stripe refused the request ({detail})", reason="invalid_request")
    if isinstance(exc, stripe.APIConnectionError):
        return RetryableError(f"stripe unreachable ({type(exc).__name__})")
    if exc.http_status == 409:
        return RetryableError(
            "stripe is still running a request with this key",
            delay_seconds=IN_PROGRESS_RETRY_SECONDS,
        )
    # APIError: 5xx and anything Stripe did not classify.
    return RetryableError(
        f"stripe answered HTTP {exc.http_status}",
        delay_seconds=retry_after_seconds(exc.headers or {}),
    )


def _payment(d: Mapping[str, Any]) -> Payment:
    charge = d.get("latest_charge")
    if isinstance(charge, Mapping):
        charge = charge.get("id")
    return Payment(
        id=d["id"],
        status=str(d["status"]),
        amount=int(d["amount"]),
        amount_received=int(d.get("amount_received") or 0),
        currency=str(d["currency"]).upper(),
        charge_id=charge,
        metadata=dict(d.get("metadata") or {}),
    )


def _refund(d: Mapping[str, Any]) -> Refund:
    return Refund(
        id=d["id"],
        status=str(d.get("status")),
        amount=int(d["amount"]),
        currency=str(d["currency"]).upper(),
        metadata=dict(d.get("metadata") or {}),
    )
