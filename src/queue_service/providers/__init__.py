"""Provider adapters: one narrow interface per kind of outside service, a
vendor adapter behind it, and a development stand-in used when no
credentials are configured. ``Providers`` builds each on first use, so a
process that never runs a job of a kind never reads that vendor's secret.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from queue_service.settings import Settings

if TYPE_CHECKING:
    from queue_service.providers.analytics import Analytics
    from queue_service.providers.email import EmailProvider
    from queue_service.providers.minting import Minter
    from queue_service.providers.payments import PaymentProvider
    from queue_service.providers.sms import SmsProvider
    from queue_service.providers.solana import Wallet
    from queue_service.providers.webhooks import Webhooks

log = structlog.get_logger("queue_service.providers")

T = TypeVar("T")


class Providers:
    """The provider adapters of one worker process, each built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._built: dict[str, Any] = {}

    def _get(self, name: str, build: Callable[[], T]) -> T:
        if name not in self._built:
            self._built[name] = build()
        return self._built[name]  # type: ignore[no-any-return]

    @property
    def wallet(self) -> Wallet:
        """The minting wallet's balance and chain view (Solana RPC or development)."""
        from queue_service.providers.solana import build_wallet

        return self._get("wallet", lambda: build_wallet(self.settings))

    @property
    def minter(self) -> Minter:
        """The minting service (or the development minter)."""
        from queue_service.providers.minting import build_minter

        return self._get("minter", lambda: build_minter(self.settings))

    @property
    def payments(self) -> PaymentProvider:
        """Stripe when STRIPE_SECRET_KEY is set, else the development sandbox."""
        from queue_service.providers.payments import build_payment_provider

        return self._get("payments", lambda: build_payment_provider(self.settings))

    @property
    def email(self) -> EmailProvider:
        """SMTP when SMTP_HOST is set, else the development outbox."""
        from queue_service.providers.email import build_email_provider

        return self._get("email", lambda: build_email_provider(self.settings))

    @property
    def sms(self) -> SmsProvider:
        """Twilio (SMS and voice) when TWILIO_ACCOUNT_SID is set, else the development outbox."""
        from queue_service.providers.sms import build_sms_provider

        return self._get("sms", lambda: build_sms_provider(self.settings))

    @property
    def webhooks(self) -> Webhooks:
        """Standard Webhooks over the SSRF-safe transport (+ the development sink)."""
        from queue_service.providers.webhooks import build

        return self._get("webhooks", lambda: build(self.settings))

    @property
    def analytics(self) -> Analytics:
        """The analytics service, or the log-only sink when ANALYTICS_SERVICE_URL is unset."""
        from queue_service.providers.analytics import build

        return self._get("analytics", lambda: build(self.settings))

    @property
    def built(self) -> dict[str, Any]:
        """The adapters built so far, by name."""
        return dict(self._built)

    async def aclose(self) -> None:
        """Close every adapter that holds connections."""
        for adapter in self._built.values():
            close = getattr(adapter, "aclose", None)
            if close is not None:
                await close()
        self._built.clear()
