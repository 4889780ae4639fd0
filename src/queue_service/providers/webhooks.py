"""Outbound webhooks: Standard Webhooks signing, delivery through the SSRF-safe
transport with size and time caps, and the log-only development sink."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets as random_secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import orjson
import structlog

from queue_service.observability.redaction import redact_text
from queue_service.providers.http_failures import retry_after_seconds
from queue_service.providers.ssrf import (
    AddressPolicy,
    DestinationRefused,
    GuardedBackend,
    GuardedTransport,
    Resolver,
    system_resolver,
)
from queue_service.settings import Settings

log = structlog.get_logger("queue_service.providers.webhooks")

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
MIN_SECRET_BYTES = 24
EXCERPT_CHARS = 512
# Bounds on a receiver's Retry-After: at least a second, at most an hour.
RETRY_AFTER_BOUNDS = (1.0, 3600.0)
USER_AGENT = "queue-service-webhooks/1"

Outcome = Literal[
    "delivered", "redirect", "gone", "throttled", "rejected", "failed", "refused", "development"
]


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(random_secrets.token_bytes(32)).decode()


def check_secret(secret: str) -> str:
    """``secret`` if it is a usable ``whsec_`` secret; ValueError saying why not
    (never echoing the secret)."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise ValueError(f"a webhook secret is {SECRET_PREFIX!r} then base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"a webhook secret needs at least {MIN_SECRET_BYTES} random bytes")
    return secret


def webhook_id(tenant: str, origin: str, event: str, payload: dict[str, Any]) -> str:
    """The ``webhook-id`` of one logical event: the same on every retry and
    every DLQ replay (``origin`` is the first job's idempotency key or id), so
    receivers can drop repeats. The event is in the digest so that a reused
    key carrying another event never shares an id with the first."""
    text = orjson.dumps([tenant, origin, event, payload], option=orjson.OPT_SORT_KEYS)
    return "msg_" + hashlib.sha256(text).hexdigest()[:32]


def display_target(url: str) -> str:
    """scheme://host[:port]/path: what may be stored and logged of a URL
    (a query string or credentials may carry a token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(invalid URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}{parts.path[:200]}"


@dataclass(frozen=True, slots=True)
class Destination:
    url: str
    secrets: tuple[str, ...] = field(repr=False)
    # Configured by an operator (QUEUE_SERVICE_WEBHOOK_ALLOW_PRIVATE_CIDRS applies)
    # or given in a job (never).
    configured: bool


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    outcome: Outcome
    status_code: int | None = None
    excerpt: str | None = None
    error: str | None = None
    retry_after: float | None = None
    duration_ms: int = 0


def classify(status: int) -> Outcome:
    if 200 <= status < 300:
        return "delivered"
    if 300 <= status < 400:
        return "redirect"
    if status == 410:
        return "gone"
    if status == 429:
        return "throttled"
    if 400 <= status < 500:
        return "rejected"
    return "failed"


class WebhookProvider:
    """Signs and posts one event to one destination per call."""

    name = "standard-webhooks"

    def __init__(self, settings: Settings, resolver: Resolver = system_resolver) -> None:
        self.timeout = settings.queue_service_webhook_timeout_seconds
        self.max_response_bytes = settings.queue_service_webhook_max_response_bytes
        self._configured = GuardedBackend(
            AddressPolicy.from_setting(settings.queue_service_webhook_allow_private_cidrs),
            resolver,
        )
        self._public = GuardedBackend(AddressPolicy(), resolver)
        self._clients = {
            True: self._client(self._configured),
            False: self._client(self._public),
        }

    def _client(self, backend: GuardedBackend) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=GuardedTransport(backend, max_connections=50, keepalive_expiry=30),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)),
        )

    @property
    def resolver(self) -> Resolver:
        return self._public.resolver

    @resolver.setter
    def resolver(self, resolver: Resolver) -> None:
        """Tests point names at loopback addresses without touching /etc/hosts."""
        self._public.resolver = resolver
        self._configured.resolver = resolver

    @property
    def backends(self) -> tuple[GuardedBackend, GuardedBackend]:
        """The guarded backends: configured endpoints', then job URLs'."""
        return (self._configured, self._public)

    def policy(self, destination: Destination) -> AddressPolicy:
        return (self._configured if destination.configured else self._public).policy

    def sign(self, secrets: tuple[str, ...], msg_id: str, at: datetime, body: str) -> str:
        """``v1,<sig>`` for each secret, space-separated (two during a rotation)."""
        # Imported where it signs: declaring webhook.process (the API, producers)
        # never loads the signing library.
        from standardwebhooks import Webhook

        return " ".join(Webhook(s).sign(msg_id, at, body) for s in secrets)

    async def deliver(
        self,
        destination: Destination,
        msg_id: str,
        event: str,
        payload: dict[str, Any],
        occurred_at: datetime,
    ) -> DeliveryResult:
        """One signed POST; never raises for what the destination did."""
        started = time.monotonic()
        try:
            self.policy(destination).check_url(destination.url)
        except DestinationRefused as exc:
            return DeliveryResult("refused", error=str(exc))
        now = datetime.fromtimestamp(int(time.time()), tz=UTC)
        body = orjson.dumps(
            {"type": event, "timestamp": occurred_at.astimezone(UTC).isoformat(), "data": payload}
        ).decode()
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            # Raw bytes only: a compressed answer could expand past the cap in one chunk.
            "accept-encoding": "identity",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self.sign(destination.secrets, msg_id, now, body),
        }
        try:
            result = await self._post(destination, body.encode(), headers)
        except DestinationRefused as exc:
            result = DeliveryResult("refused", error=str(exc))
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            result = DeliveryResult("refused", error=f"invalid URL: {exc}")
        except (TimeoutError, httpx.TimeoutException):
            result = DeliveryResult("failed", error=f"no answer within {self.timeout:g} s")
        except httpx.HTTPError as exc:
            result = DeliveryResult("failed", error=f"{type(exc).__name__}: {exc}"[:300])
        duration_ms = int((time.monotonic() - started) * 1000)
        return DeliveryResult(
            result.outcome,
            result.status_code,
            result.excerpt,
            result.error,
            result.retry_after,
            duration_ms,
        )

    async def _post(
        self, destination: Destination, body: bytes, headers: dict[str, str]
    ) -> DeliveryResult:
        client = self._clients[destination.configured]
        # One cap on the whole exchange: connect, send, and a slow-dripping answer.
        async with (
            asyncio.timeout(self.timeout),
            client.stream("POST", destination.url, content=body, headers=headers) as response,
        ):
            kept = bytearray()
            async for chunk in response.aiter_raw():
                kept += chunk[: self.max_response_bytes - len(kept)]
                if len(kept) >= self.max_response_bytes:
                    break  # the rest is never read; closing drops the connection
        excerpt = redact_text(bytes(kept[: EXCERPT_CHARS * 4]).decode("utf-8", "replace"))
        outcome = classify(response.status_code)
        return DeliveryResult(
            outcome,
            response.status_code,
            excerpt[:EXCERPT_CHARS],
            None if outcome == "delivered" else f"HTTP {response.status_code}",
            retry_after_seconds(response.headers, bounds=RETRY_AFTER_BOUNDS),
        )

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()


class DevelopmentWebhookSink:
    """Development stand-in for an endpoint that is not configured: logs the
    event type and webhook-id, sends nothing."""

    name = "log-only webhook sink (development)"

    def accept(self, tenant: str, endpoint: str, event: str, msg_id: str) -> DeliveryResult:
        log.info(
            "development webhook sink: not sent (no endpoint configured)",
            provider=self.name,
            tenant_id=tenant,
            endpoint=endpoint,
            event_type=event,
            webhook_id=msg_id,
        )
        return DeliveryResult("development", error="development sink: not sent")


@dataclass(slots=True)
class Webhooks:
    """What ``Providers.webhooks`` holds: the real sender, and the development
    sink (None in production, where an unconfigured endpoint is an error)."""

    sender: WebhookProvider
    sink: DevelopmentWebhookSink | None

    async def aclose(self) -> None:
        await self.sender.aclose()


def build(settings: Settings) -> Webhooks:
    sink = DevelopmentWebhookSink() if settings.is_development else None
    if sink is not None:
        log.warning("webhooks: endpoints not configured go to the log-only development sink")
    return Webhooks(WebhookProvider(settings), sink)
