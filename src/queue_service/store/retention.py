"""Retention's dry run and the purge benchmark's seed: capped counts that use
the purge statements' own predicates and indexes (the purges themselves sit
beside their tables' other statements)."""

from __future__ import annotations

from typing import Any, LiteralString

from queue_service.store.db import Database
from queue_service.store.queries import Q


class RetentionStore:
    """Counts of what a purge would remove, each bounded by ``cap``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _capped(self, query: LiteralString, params: dict[str, Any]) -> int:
        async with self.db.connection() as c:
            cur = await c.execute(query, params)
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def count_finished_past(
        self, days: int, prefixes: list[str], exclude: list[str], cap: int
    ) -> int:
        params = {"days": days, "prefixes": prefixes, "exclude": exclude, "cap": cap}
        return await self._capped(Q["retention_count_finished"], params)

    async def count_dead_letters_past(self, days: int, cap: int) -> int:
        return await self._capped(Q["retention_count_dead_letters"], {"days": days, "cap": cap})

    async def count_events_past(self, days: int, cap: int) -> int:
        return await self._capped(Q["retention_count_events"], {"days": days, "cap": cap})

    async def count_webhook_deliveries_past(self, days: int, cap: int) -> int:
        params = {"days": days, "cap": cap}
        return await self._capped(Q["retention_count_webhook_deliveries"], params)

    async def count_sent_messages_past(self, days: int, cap: int) -> int:
        params = {"days": days, "cap": cap}
        return await self._capped(Q["retention_count_sent_messages"], params)

    async def count_metric_snapshots_past(self, days: int, cap: int) -> int:
        params = {"days": days, "cap": cap}
        return await self._capped(Q["retention_count_metric_snapshots"], params)

    async def count_alerts_past(self, days: int, cap: int) -> int:
        return await self._capped(Q["retention_count_alerts"], {"days": days, "cap": cap})

    async def count_expired_keys(self, cap: int) -> int:
        return await self._capped(Q["retention_count_expired_keys"], {"cap": cap})

    async def count_nonces_past(self, seconds: float, cap: int) -> int:
        params = {"seconds": seconds, "cap": cap}
        return await self._capped(Q["retention_count_nonces"], params)

    async def bench_seed_finished(self, rows: int, days: int) -> None:
        """``rows`` completed jobs finished ``days`` ago (the purge benchmark)."""
        async with self.db.connection() as c:
            await c.execute(Q["bench_seed_finished"], {"rows": rows, "days": days})

    async def bench_forget(self, job_type: str) -> None:
        async with self.db.connection() as c:
            await c.execute(Q["bench_forget"], {"type": job_type})
