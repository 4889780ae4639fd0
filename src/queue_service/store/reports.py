"""Statements behind report.generate: finished work and dead letters over a period."""

from __future__ import annotations

from dataclasses import dataclass

from queue_service.store.db import Database
from queue_service.store.queries import Q


@dataclass(frozen=True, slots=True)
class FinishedByType:
    queue: str
    type: str
    status: str
    count: int
    p50_seconds: float | None
    p95_seconds: float | None
    retries: int


@dataclass(frozen=True, slots=True)
class DeadLettersByType:
    type: str
    count: int
    replayed: int
    top_error: str | None


class ReportStore:
    db: Database

    async def report_finished(self, tenant: str | None, seconds: int) -> list[FinishedByType]:
        """Finished jobs of the last ``seconds`` by queue, type and status (tenant None: all)."""
        async with self.db.connection() as c:
            cur = await c.execute(
                Q["report_finished_by_type"], {"tenant": tenant, "seconds": seconds}
            )
            return [FinishedByType(*row) for row in await cur.fetchall()]

    async def report_dead_letters(
        self, tenant: str | None, seconds: int
    ) -> list[DeadLettersByType]:
        """Dead letters of the last ``seconds`` by type (tenant None: all)."""
        async with self.db.connection() as c:
            cur = await c.execute(
                Q["report_dead_letters_by_type"], {"tenant": tenant, "seconds": seconds}
            )
            return [DeadLettersByType(*row) for row in await cur.fetchall()]
