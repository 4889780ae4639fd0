"""Statements behind the metrics: scrape-time gauges and per-minute snapshots."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row

from queue_service.store.db import Database
from queue_service.store.queries import Q


@dataclass(frozen=True, slots=True)
class LiveQueue:
    """One queue's live jobs as the database sees them now."""

    queue: str
    waiting: int
    delayed: int
    active: int
    oldest_waiting_age_seconds: float | None


@dataclass(frozen=True, slots=True)
class DeadLetterCount:
    queue: str
    dead_letters: int


@dataclass(frozen=True, slots=True)
class MetricSnapshot:
    """One minute of one queue (summed over the tenants asked for)."""

    at: datetime
    queue: str
    waiting: int
    delayed: int
    active: int
    completed: int
    failed: int
    cancelled: int
    oldest_waiting_age_seconds: float | None


class MetricsStore:
    db: Database

    async def metric_live_queues(self, tenant: str | None = None) -> list[LiveQueue]:
        """Waiting, delayed, active and oldest waiting age per queue (tenant None: all)."""
        async with self.db.connection() as c, c.cursor(row_factory=class_row(LiveQueue)) as cur:
            await cur.execute(Q["metrics_live_jobs"], {"tenant": tenant})
            return await cur.fetchall()

    async def metric_dead_letters(self, tenant: str | None = None) -> list[DeadLetterCount]:
        """Dead letters not yet replayed per queue (tenant None: all)."""
        async with (
            self.db.connection() as c,
            c.cursor(row_factory=class_row(DeadLetterCount)) as cur,
        ):
            await cur.execute(Q["metrics_dead_letters"], {"tenant": tenant})
            return await cur.fetchall()

    async def take_metric_snapshot(self) -> int:
        """Write this minute's snapshot unless written already; rows written."""
        async with self.db.connection() as c:
            cur = await c.execute(Q["metrics_snapshot_written"])
            if (written := await cur.fetchone()) and written[0]:
                return 0
            cur = await c.execute(Q["metrics_snapshot_take"])
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def metric_history(self, seconds: int, tenant: str | None = None) -> list[MetricSnapshot]:
        """Snapshots of the last ``seconds`` per minute and queue (tenant None: all)."""
        async with (
            self.db.connection() as c,
            c.cursor(row_factory=class_row(MetricSnapshot)) as cur,
        ):
            await cur.execute(Q["metrics_history"], {"seconds": seconds, "tenant": tenant})
            return await cur.fetchall()

    async def purge_metric_snapshots(self, days: int, limit: int = 1000) -> int:
        """Delete up to ``limit`` snapshots older than ``days`` (retention: 30)."""
        async with self.db.connection() as c:
            cur = await c.execute(Q["metrics_snapshot_purge"], {"days": days, "limit": limit})
            row = await cur.fetchone()
            return int(row[0]) if row else 0
