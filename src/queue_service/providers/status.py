"""Which provider each kind of work will use, decided from settings alone (no
adapter is built, no secret read, no SDK imported): the one rule the builders,
/health/ready, the start-up log and production's refusal of stand-ins follow."""

from __future__ import annotations

from dataclasses import dataclass

from queue_service.settings import Settings


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    kind: str  # what the platform needs: payments, wallet, minting, email, sms, ...
    name: str  # what serves it: stripe, solana, smtp, or a development stand-in
    development: bool
    # The settings that select the real provider (for the refusal message).
    configure: str

    def describe(self) -> str:
        return f"development: {self.name}" if self.development else self.name


def provider_statuses(settings: Settings) -> list[ProviderStatus]:
    """Every kind of outside work and what will serve it, real or development.

    Webhooks have no row: their sender is always the real one, and the
    development sink (QUEUE_SERVICE_ENV=development only) takes jobs naming an
    endpoint the tenant has not configured in the database; no setting selects
    it, so there is nothing to configure and nothing production could refuse.
    """
    s = settings

    def pick(kind: str, real: str, dev: str, configured: bool, configure: str) -> ProviderStatus:
        return ProviderStatus(kind, real if configured else dev, not configured, configure)

    return [
        pick(
            "payments",
            "stripe",
            "payment sandbox",
            s.has_secret("STRIPE_SECRET_KEY"),
            "STRIPE_SECRET_KEY or STRIPE_SECRET_KEY_FILE",
        ),
        pick(
            "wallet",
            "solana",
            "development wallet",
            bool(s.solana_rpc_url and s.solana_wallet_address),
            "SOLANA_RPC_URL and SOLANA_WALLET_ADDRESS",
        ),
        pick(
            "minting",
            "minting-service",
            "development minter",
            bool(s.minting_service_url),
            "MINTING_SERVICE_URL",
        ),
        pick("email", "smtp", "email outbox", bool(s.smtp_host), "SMTP_HOST"),
        pick(
            "sms",
            "twilio",
            "sms outbox",
            bool(s.twilio_account_sid and s.has_secret("TWILIO_AUTH_TOKEN")),
            "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
        ),
        pick(
            "analytics",
            "analytics-service",
            "analytics log",
            bool(s.analytics_service_url),
            "ANALYTICS_SERVICE_URL",
        ),
    ]


def kind_status(settings: Settings, kind: str) -> ProviderStatus:
    """What will serve ``kind`` (payments, wallet, minting, email, sms, analytics)."""
    for status in provider_statuses(settings):
        if status.kind == kind:
            return status
    raise KeyError(f"no provider kind {kind!r}")


def development_in_use(settings: Settings) -> list[ProviderStatus]:
    return [p for p in provider_statuses(settings) if p.development]


def production_refusal(settings: Settings) -> tuple[str, str] | None:
    """Why a production process that runs jobs must not start, as (problem,
    what to do), or None: two lines, however many providers it names."""
    if settings.is_development:
        return None
    dev = development_in_use(settings)
    if not dev:
        return None
    problem = "QUEUE_SERVICE_ENV=production, but work would run on development providers: " + (
        ", ".join(f"{p.kind}: {p.name}" for p in dev)
    )
    fix = (
        "configure "
        + "; ".join(f"{p.configure} ({p.kind})" for p in dev)
        + ", or run with QUEUE_SERVICE_ENV=development"
    )
    return problem, fix
