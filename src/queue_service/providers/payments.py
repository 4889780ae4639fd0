"""The payment provider interface the money processors use, its records, and
which implementation a process gets (Stripe with a key, else the sandbox)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from queue_service.providers.status import kind_status
from queue_service.settings import Settings

# Statuses of a PaymentIntent that mean money moved or is held for us.
PAID_STATUSES = frozenset({"succeeded", "requires_capture", "processing"})
# Refund statuses that count against what is left to refund.
LIVE_REFUND_STATUSES = frozenset({"succeeded", "pending", "requires_action"})


@dataclass(frozen=True, slots=True)
class Payment:
    """A PaymentIntent (or, looked up by a ch_ id, its charge)."""

    id: str
    status: str
    amount: int
    amount_received: int
    currency: str  # upper case
    charge_id: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def paid(self) -> bool:
        return self.status in PAID_STATUSES


@dataclass(frozen=True, slots=True)
class Refund:
    id: str
    status: str
    amount: int
    currency: str  # upper case
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def counts(self) -> bool:
        """Whether it takes from what is left to refund."""
        return self.status in LIVE_REFUND_STATUSES


class PaymentProvider(Protocol):
    """Stripe's calls as the processors need them. Every method raises
    PermanentError (with a SPEC §3 reason), RetryableError or Snooze
    (queue_service.errors), never a vendor exception."""

    name: str
    is_development: bool

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
        """Create and confirm a PaymentIntent (off-session)."""

    async def capture(
        self, payment_intent_id: str, *, amount: int | None, idempotency_key: str
    ) -> Payment: ...

    async def retrieve(self, transaction_id: str) -> Payment:
        """A PaymentIntent (pi_...) or a charge (ch_...)."""

    async def refund(
        self,
        *,
        transaction_id: str,
        amount: int,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> Refund:
        """Refund ``amount`` of a PaymentIntent (pi_...) or a charge (ch_...)."""

    async def list_refunds(self, transaction_id: str) -> list[Refund]:
        """Every refund of a PaymentIntent or charge (strongly consistent)."""

    async def search_payments(self, metadata: Mapping[str, str]) -> list[Payment]:
        """PaymentIntents whose metadata has all these values. Stripe's search
        is eventually consistent (about a minute): use it only for attempts old
        enough to have been indexed."""

    async def aclose(self) -> None: ...


def transaction_field(transaction_id: str) -> str:
    """The refund parameter a transaction id goes in."""
    if transaction_id.startswith("pi_"):
        return "payment_intent"
    if transaction_id.startswith(("ch_", "py_")):
        return "charge"
    raise ValueError(
        f"transaction id {transaction_id!r} is neither a PaymentIntent (pi_) nor a charge (ch_)"
    )


def build_payment_provider(settings: Settings) -> PaymentProvider:
    """Stripe when STRIPE_SECRET_KEY (or _FILE) is set, else the sandbox."""
    development = kind_status(settings, "payments").development
    key = None if development else settings.secret("STRIPE_SECRET_KEY")
    if key is None:
        from queue_service.providers.sandbox import PaymentSandbox

        return PaymentSandbox()
    from queue_service.providers.stripe import StripeProvider

    return StripeProvider(key, api_base=settings.stripe_api_base)
