"""Statements of alerting: the measurements the evaluator reads and the
alert_history rows (firing, cooldown claim, resolution, acknowledgement)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from psycopg.rows import class_row

from queue_service.core.ids import uuid7
from queue_service.store.db import Database, json_text
from queue_service.store.queries import Q

_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
_MAX_UUID = UUID(int=(1 << 128) - 1)


@dataclass(frozen=True, slots=True)
class QueueMeasure:
    queue: str
    depth: int
    oldest_seconds: float | None


@dataclass(frozen=True, slots=True)
class OpenFiring:
    """The open firing of a key after an observation."""

    id: UUID
    rule: str
    severity: str
    fired_at: datetime
    notifications: int
    last_notified_at: datetime | None
    acknowledged_at: datetime | None
    opened: bool  # this observation opened it


@dataclass(frozen=True, slots=True)
class AlertRecord:
    id: UUID
    rule: str
    fire_key: str
    severity: str
    fired_at: datetime
    observed_at: datetime
    value: float
    threshold: float
    message: str
    notifications: int
    last_notified_at: datetime | None
    channels: list[dict[str, Any]]
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None

    @property
    def status(self) -> str:
        if self.resolved_at is not None:
            return "resolved"
        return "acknowledged" if self.acknowledged_at is not None else "firing"


class AlertStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def alert_queue_measures(self, queues: list[str]) -> dict[str, QueueMeasure]:
        async with self.db.connection() as c, c.cursor(row_factory=class_row(QueueMeasure)) as cur:
            await cur.execute(Q["alert_queue_measures"], {"queues": queues})
            found = {m.queue: m for m in await cur.fetchall()}
        return {q: found.get(q, QueueMeasure(q, 0, None)) for q in queues}

    async def alert_failure_count(self, queue: str, window_seconds: int) -> int:
        async with self.db.connection() as c:
            cur = await c.execute(
                Q["alert_failure_count"], {"queue": queue, "window": window_seconds}
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def alert_observe(
        self,
        *,
        rule: str,
        fire_key: str,
        severity: str,
        value: float,
        threshold: float,
        message: str,
    ) -> OpenFiring:
        """The open firing of ``fire_key`` (opened now if none), with this observation."""
        params = {
            "id": uuid7(),
            "rule": rule,
            "fire_key": fire_key,
            "severity": severity,
            "value": value,
            "threshold": threshold,
            "message": message,
        }
        async with self.db.connection() as c, c.cursor(row_factory=class_row(OpenFiring)) as cur:
            await cur.execute(Q["alert_observe"], params)
            row = await cur.fetchone()
        assert row is not None  # an upsert always returns its row
        return row

    async def alert_claim_notification(self, alert_id: UUID, cooldown_seconds: int) -> int | None:
        """The notification round's number if this caller may notify now
        (outside the key's cooldown, unacknowledged, unresolved), else None."""
        async with self.db.connection() as c:
            cur = await c.execute(
                Q["alert_claim_notification"], {"id": alert_id, "cooldown": cooldown_seconds}
            )
            row = await cur.fetchone()
        return int(row[0]) if row else None

    async def alert_record_channels(self, alert_id: UUID, channels: list[dict[str, Any]]) -> None:
        async with self.db.connection() as c:
            await c.execute(
                Q["alert_record_channels"], {"id": alert_id, "channels": json_text(channels)}
            )

    async def alert_resolve(self, fire_key: str) -> UUID | None:
        """Close the open firing of ``fire_key``; its id, or None if none was open."""
        async with self.db.connection() as c:
            cur = await c.execute(Q["alert_resolve"], {"fire_key": fire_key})
            row = await cur.fetchone()
        return row[0] if row else None

    async def list_alerts(
        self,
        limit: int,
        *,
        status: str | None = None,
        severity: str | None = None,
        rule: str | None = None,
        before: tuple[datetime, UUID] | None = None,
    ) -> list[AlertRecord]:
        """Newest first; ``before`` is the keyset cursor (fired_at, id)."""
        at, before_id = before or (_FAR_FUTURE, _MAX_UUID)
        params = {
            "status": status,
            "severity": severity,
            "rule": rule,
            "before_at": at,
            "before_id": before_id,
            "limit": limit,
        }
        async with self.db.connection() as c, c.cursor(row_factory=class_row(AlertRecord)) as cur:
            await cur.execute(Q["alert_list"], params)
            return await cur.fetchall()

    async def get_alert(self, alert_id: UUID) -> AlertRecord | None:
        async with self.db.connection() as c, c.cursor(row_factory=class_row(AlertRecord)) as cur:
            await cur.execute(Q["alert_get"], {"id": alert_id})
            return await cur.fetchone()

    async def acknowledge_alert(self, alert_id: UUID, by: str) -> AlertRecord | None:
        """Acknowledge (idempotent: the first time and author stay); None if unknown."""
        async with self.db.connection() as c, c.cursor(row_factory=class_row(AlertRecord)) as cur:
            await cur.execute(Q["alert_acknowledge"], {"id": alert_id, "by": by})
            return await cur.fetchone()

    async def purge_alerts(self, days: int = 7, limit: int = 1000) -> int:
        """Delete up to ``limit`` firings resolved more than ``days`` ago."""
        async with self.db.connection() as c:
            cur = await c.execute(Q["alert_purge"], {"days": days, "limit": limit})
            row = await cur.fetchone()
        return int(row[0]) if row else 0
