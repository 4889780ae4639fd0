"""Statements of outbound webhooks: configured endpoints (with their signing
secrets), the origin of a logical event, and the delivery record."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from queue_service.observability.redaction import redact_text
from queue_service.store.db import Database
from queue_service.store.queries import Q


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    tenant_id: str
    name: str
    url: str
    # Never in a repr, so never in a log line or a traceback.
    secrets: tuple[str, ...] = field(repr=False)
    enabled: bool = True
    disabled_at: datetime | None = None
    disabled_reason: str | None = None


@dataclass(frozen=True, slots=True)
class EventOrigin:
    """The job a logical event started with (a DLQ replay points back to it)."""

    job_id: UUID
    tenant_id: str
    idempotency_key: str | None
    # Set only when the origin was purged: its id, the furthest one known.
    purged_origin: UUID | None
    created_at: datetime

    @property
    def identity(self) -> str:
        """What stays the same for every job carrying this event."""
        if self.purged_origin is not None:
            return f"job:{self.purged_origin}"
        if self.idempotency_key is not None:
            return f"key:{self.idempotency_key}"
        return f"job:{self.job_id}"


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    job_id: UUID
    webhook_id: str
    endpoint: str | None
    target: str
    attempt: int
    outcome: str
    status_code: int | None
    response_excerpt: str | None
    error: str | None
    duration_ms: int | None
    at: datetime


def _endpoint(row: Any) -> WebhookEndpoint:
    tenant_id, name, url, secrets, enabled, disabled_at, reason = row
    return WebhookEndpoint(tenant_id, name, url, tuple(secrets), enabled, disabled_at, reason)


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _changed(self, statement: str, params: dict[str, Any]) -> bool:
        async with self.db.connection() as c:
            cur = await c.execute(Q[statement], params)
            return await cur.fetchone() is not None

    async def get_webhook_endpoint(self, tenant: str, name: str) -> WebhookEndpoint | None:
        async with self.db.connection() as c:
            cur = await c.execute(Q["webhook_endpoint_get"], {"tenant": tenant, "name": name})
            row = await cur.fetchone()
        return _endpoint(row) if row else None

    async def list_webhook_endpoints(self, tenant: str | None = None) -> list[WebhookEndpoint]:
        async with self.db.connection() as c:
            cur = await c.execute(Q["webhook_endpoint_list"], {"tenant": tenant})
            return [_endpoint(row) for row in await cur.fetchall()]

    async def add_webhook_endpoint(self, tenant: str, name: str, url: str, secret: str) -> bool:
        """False when the tenant already has an endpoint of that name."""
        return await self._changed(
            "webhook_endpoint_add", {"tenant": tenant, "name": name, "url": url, "secret": secret}
        )

    async def remove_webhook_endpoint(self, tenant: str, name: str) -> bool:
        return await self._changed("webhook_endpoint_remove", {"tenant": tenant, "name": name})

    async def enable_webhook_endpoint(self, tenant: str, name: str) -> bool:
        return await self._changed("webhook_endpoint_enable", {"tenant": tenant, "name": name})

    async def disable_webhook_endpoint(self, tenant: str, name: str, reason: str) -> bool:
        return await self._changed(
            "webhook_endpoint_disable", {"tenant": tenant, "name": name, "reason": reason}
        )

    async def rotate_webhook_secret(self, tenant: str, name: str, secret: str) -> bool:
        """Add ``secret`` beside the newest one: both sign until the rotation ends."""
        return await self._changed(
            "webhook_endpoint_rotate", {"tenant": tenant, "name": name, "secret": secret}
        )

    async def finish_webhook_rotation(self, tenant: str, name: str) -> bool:
        return await self._changed(
            "webhook_endpoint_finish_rotation", {"tenant": tenant, "name": name}
        )

    async def webhook_event_origin(self, job_id: UUID) -> EventOrigin | None:
        async with self.db.connection() as c:
            cur = await c.execute(Q["webhook_event_origin"], {"id": job_id})
            row = await cur.fetchone()
        return EventOrigin(*row) if row else None

    async def record_webhook_delivery(
        self,
        *,
        tenant: str,
        job_id: UUID,
        webhook_id: str,
        endpoint: str | None,
        target: str,
        attempt: int,
        outcome: str,
        status_code: int | None = None,
        excerpt: str | None = None,
        error: str | None = None,
        duration_ms: int | None = None,
    ) -> None:
        """Receivers' answers and transport errors are stored redacted (a
        receiver may echo the payload; a URL may carry a token)."""
        async with self.db.connection() as c:
            await c.execute(
                Q["webhook_delivery_record"],
                {
                    "tenant": tenant,
                    "job_id": job_id,
                    "webhook_id": webhook_id,
                    "endpoint": endpoint,
                    "target": redact_text(target),
                    "attempt": attempt,
                    "outcome": outcome,
                    "status_code": status_code,
                    "excerpt": None if excerpt is None else redact_text(excerpt),
                    "error": None if error is None else redact_text(error),
                    "duration_ms": duration_ms,
                },
            )

    async def webhook_deliveries(self, job_id: UUID) -> list[WebhookDelivery]:
        async with self.db.connection() as c:
            cur = await c.execute(Q["webhook_delivery_list"], {"job_id": job_id})
            return [WebhookDelivery(*row) for row in await cur.fetchall()]

    async def purge_webhook_deliveries(self, days: int, limit: int = 1000) -> int:
        """Delete up to ``limit`` delivery records older than ``days``."""
        async with self.db.connection() as c:
            cur = await c.execute(Q["webhook_delivery_purge"], {"days": days, "limit": limit})
            row = await cur.fetchone()
            return int(row[0]) if row else 0
