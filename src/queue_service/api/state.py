"""What the API holds while it runs: the tenant-scoped pool, the verifiers,
the engine runtime, and the start-up flags the probes report."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import structlog

from queue_service.api.auth.principal import Principal
from queue_service.api.auth.signing import ANY_SERVICE, HmacVerifier
from queue_service.api.auth.tokens import JwtVerifier
from queue_service.api.ratelimit import InboundLimiter
from queue_service.providers.health import ProviderHealth
from queue_service.runtime.manager import JobManager
from queue_service.runtime.service import Runtime
from queue_service.settings import Settings
from queue_service.store import Database, Store
from queue_service.store.auth import NonceRepository
from queue_service.store.db import API_ROLE

log = structlog.get_logger("queue_service.api")
DEV_KEY_FILE = "dev-jwt-secret"


class ConfigurationError(RuntimeError):
    """The API cannot start with this configuration; the message says why."""


@dataclass(slots=True)
class Scope:
    """One request's view of the database: a transaction RLS scopes to a tenant."""

    principal: Principal
    store: Store
    manager: JobManager


@dataclass(slots=True)
class ApiState:
    settings: Settings
    runtime: Runtime
    db: Database  # acts as queue_service_api: row-level security applies
    jwt: JwtVerifier
    hmac: HmacVerifier | None
    limiter: InboundLimiter
    started: bool = False  # migrations ran and (in serve) workers started
    notes: dict[str, str] = field(default_factory=dict)
    # /health/ready's provider probes, cached across requests (built on first use).
    provider_health: ProviderHealth | None = None

    def providers(self) -> ProviderHealth:
        if self.provider_health is None:
            self.provider_health = ProviderHealth(self.settings)
        return self.provider_health

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.limiter.close()
        await self.db.close()

    @asynccontextmanager
    async def scope(self, principal: Principal) -> AsyncIterator[Scope]:
        async with self.db.tenant_transaction(principal.tenant_id) as bound:
            store = Store(bound)
            yield Scope(principal, store, JobManager(store, self.runtime.registry))


def dev_secret(data_dir: Path) -> str:
    """A random HS256 key kept per data directory (development mode only)."""
    path = data_dir / DEV_KEY_FILE
    if path.exists():
        return path.read_text("utf-8").strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret


def build_jwt_verifier(settings: Settings) -> JwtVerifier:
    """The configured verifier; refuses to run without a key outside development."""
    public_key = settings.jwt_public_key.get_secret_value() if settings.jwt_public_key else None
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    algorithm = settings.jwt_algorithm or ("RS256" if public_key and not secret else "HS256")
    try:
        if algorithm == "RS256":
            if not public_key:
                raise ConfigurationError("JWT_ALGORITHM=RS256 needs JWT_PUBLIC_KEY (or _FILE)")
            return JwtVerifier(
                "RS256", public_key, issuer=settings.jwt_issuer, audience=settings.jwt_audience
            )
        if not secret:
            if not settings.is_development:
                raise ConfigurationError(
                    "no JWT key: set JWT_SECRET (or JWT_SECRET_FILE) for HS256, or "
                    "JWT_PUBLIC_KEY with JWT_ALGORITHM=RS256; for local use only, "
                    "QUEUE_SERVICE_ENV=development generates a key per data directory"
                )
            secret = dev_secret(settings.data_dir)
            log.warning(
                "development mode: JWT key generated for this data directory; "
                "mint tokens with `queue-service token`",
                key_file=str(settings.data_dir / DEV_KEY_FILE),
            )
        return JwtVerifier(
            "HS256", secret, issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def build_hmac_verifier(settings: Settings, nonces: NonceRepository) -> HmacVerifier | None:
    """Service auth, when INTERNAL_HMAC_SECRET or INTERNAL_HMAC_SECRETS is set;
    without either, signed requests get 401."""
    secrets: dict[str, str] = {}
    if settings.internal_hmac_secret is not None:
        secrets[ANY_SERVICE] = settings.internal_hmac_secret.get_secret_value()
    if settings.internal_hmac_secrets is not None:
        secrets.update(_per_service_secrets(settings.internal_hmac_secrets.get_secret_value()))
    if not secrets:
        return None
    try:
        return HmacVerifier(secrets, settings.allowed_services, nonces)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def _per_service_secrets(text: str) -> dict[str, str]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigurationError(
            "INTERNAL_HMAC_SECRETS must be a JSON object of service names to secrets, "
            'e.g. {"order-service": "..."}'
        )
    return value


def build_api_state(settings: Settings, runtime: Runtime) -> ApiState:
    db = Database(
        runtime.conninfo,
        role=API_ROLE,
        max_size=settings.queue_service_pool_size,
        prepare=not settings.queue_service_pgbouncer,
        pgbouncer=settings.queue_service_pgbouncer,
        timeout=settings.queue_service_api_pool_timeout_seconds,
        timeout_setting="QUEUE_SERVICE_API_POOL_TIMEOUT_SECONDS",
        application_name="queue-service api",
        coalesce_seconds=settings.queue_service_enqueue_coalesce_ms / 1000,
        coalesce_max=settings.queue_service_enqueue_coalesce_max,
    )
    return ApiState(
        settings=settings,
        runtime=runtime,
        db=db,
        jwt=build_jwt_verifier(settings),
        hmac=build_hmac_verifier(settings, NonceRepository(runtime.db)),
        limiter=InboundLimiter(db),
    )
