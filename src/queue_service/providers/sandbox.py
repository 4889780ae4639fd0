"""The development payment sandbox: answers our Stripe calls like Stripe's
test mode (declining test cards, idempotency keys), with its state in this
process's memory only — a restart forgets every payment. Never for production."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import structlog

from queue_service.core.money import currency_code
from queue_service.errors import PermanentError
from queue_service.providers.payments import Payment, Refund, transaction_field

log = structlog.get_logger("queue_service.providers.sandbox")

# Stripe's test payment methods that decline (https://docs.stripe.com/testing).
DECLINING_METHODS = {
    "pm_card_chargeDeclined": "generic_decline",
    "pm_card_visa_chargeDeclined": "generic_decline",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "pm_card_visa_chargeDeclinedInsufficientFunds": "insufficient_funds",
    "pm_card_chargeDeclinedLostCard": "lost_card",
    "pm_card_visa_chargeDeclinedLostCard": "lost_card",
    "pm_card_chargeDeclinedStolenCard": "stolen_card",
    "pm_card_visa_chargeDeclinedStolenCard": "stolen_card",
    "pm_card_chargeDeclinedExpiredCard": "expired_card",
    "pm_card_chargeDeclinedIncorrectCvc": "incorrect_cvc",
    "pm_card_chargeDeclinedProcessingError": "processing_error",
}


def _id(prefix: str) -> str:
    return f"{prefix}_sandbox_{secrets.token_hex(8)}"


class PaymentSandbox:
    """PaymentProvider in memory. Keys are remembered for the life of the
    process (Stripe keeps them 24 h); the same key with other parameters is
    refused, as Stripe does."""

    name = "payment sandbox"
    is_development = True

    def __init__(self) -> None:
        self._intents: dict[str, Payment] = {}
        self._refunds: dict[str, tuple[str, Refund]] = {}  # id -> (intent id, refund)
        self._answers: dict[str, tuple[tuple[Any, ...], Payment | Refund | PermanentError]] = {}
        log.warning(
            "payment provider: the development payment sandbox (no STRIPE_SECRET_KEY);"
            " no money moves and its records live in this process's memory only"
        )

    def _replay(self, key: str, params: tuple[Any, ...]) -> Payment | Refund | None:
        if key not in self._answers:
            return None
        seen, answer = self._answers[key]
        if seen != params:
            raise PermanentError(
                "sandbox: idempotency key reused with different parameters",
                reason="idempotency_conflict",
            )
        if isinstance(answer, PermanentError):
            raise answer
        return answer

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
        params = ("create", amount, currency, payment_method, tuple(sorted(metadata.items())))
        replayed = self._replay(idempotency_key, params)
        if isinstance(replayed, Payment):
            return replayed
        answer: Payment | PermanentError
        if amount <= 0 or not payment_method.startswith("pm_"):
            answer = PermanentError("sandbox: invalid payment", reason="invalid_request")
        elif payment_method in DECLINING_METHODS:
            answer = PermanentError(
                f"card declined (card_declined, {DECLINING_METHODS[payment_method]})",
                reason="card_declined",
            )
        else:
            answer = Payment(
                id=_id("pi"),
                status="succeeded" if capture else "requires_capture",
                amount=amount,
                amount_received=amount if capture else 0,
                currency=currency_code(currency),
                charge_id=_id("ch"),
                metadata=dict(metadata),
            )
            self._intents[answer.id] = answer
        self._answers[idempotency_key] = (params, answer)
        if isinstance(answer, PermanentError):
            raise answer
        return answer

    async def capture(
        self, payment_intent_id: str, *, amount: int | None, idempotency_key: str
    ) -> Payment:
        params = ("capture", payment_intent_id, amount)
        replayed = self._replay(idempotency_key, params)
        if isinstance(replayed, Payment):
            return replayed
        intent = self._find(payment_intent_id)
        if intent.status != "requires_capture":
            raise PermanentError(
                f"sandbox: {payment_intent_id} is {intent.status}, not capturable",
                reason="invalid_request",
            )
        received = intent.amount if amount is None else min(amount, intent.amount)
        captured = replace(intent, status="succeeded", amount_received=received)
        self._intents[intent.id] = captured
        self._answers[idempotency_key] = (params, captured)
        return captured

    async def retrieve(self, transaction_id: str) -> Payment:
        return self._find(transaction_id)

    async def refund(
        self,
        *,
        transaction_id: str,
        amount: int,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> Refund:
        params = ("refund", transaction_id, amount, tuple(sorted(metadata.items())))
        replayed = self._replay(idempotency_key, params)
        if isinstance(replayed, Refund):
            return replayed
        intent = self._find(transaction_id)
        left = intent.amount_received - sum(
            r.amount for i, r in self._refunds.values() if i == intent.id and r.counts
        )
        if amount > left:
            raise PermanentError(
                "sandbox: refund exceeds the charge's unrefunded amount", reason="invalid_request"
            )
        refund = Refund(_id("re"), "succeeded", amount, intent.currency, dict(metadata))
        self._refunds[refund.id] = (intent.id, refund)
        self._answers[idempotency_key] = (params, refund)
        return refund

    async def list_refunds(self, transaction_id: str) -> list[Refund]:
        intent = self._find(transaction_id)
        return [r for i, r in self._refunds.values() if i == intent.id]

    async def search_payments(self, metadata: Mapping[str, str]) -> list[Payment]:
        return [
            p
            for p in self._intents.values()
            if all(p.metadata.get(k) == v for k, v in metadata.items())
        ]

    async def aclose(self) -> None:
        """Nothing to close: no connections."""

    def _find(self, transaction_id: str) -> Payment:
        by_charge = transaction_field(transaction_id) == "charge"
        for intent in self._intents.values():
            if intent.id == transaction_id or (by_charge and intent.charge_id == transaction_id):
                return intent
        raise PermanentError(f"sandbox: no such payment {transaction_id}", reason="not_found")
