"""Statements of inbound rate limiting: counters shared by every API process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from queue_service.store.db import Database
from queue_service.store.queries import Q


@dataclass(frozen=True, slots=True)
class WindowCount:
    key: str
    limit: int
    count: int
    seconds_left: float


@dataclass(frozen=True, slots=True)
class WindowState:
    key: str
    limit: int
    window_seconds: int
    count: int
    reset_at: datetime | None


class RateLimitStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self,
        tenant: str,
        keys: list[str],
        limits: list[int],
        deltas: list[int],
        window_seconds: int,
    ) -> list[WindowCount]:
        """Add ``deltas`` requests to the keys' windows; the counts after."""
        async with self.db.connection() as c:
            # A counter lost in a crash costs nothing; not waiting for the
            # WAL flush keeps the check off the request's critical path.
            await c.execute("SET LOCAL synchronous_commit = off")
            cur = await c.execute(
                Q["rate_limit_add"],
                {
                    "tenant": tenant,
                    "keys": keys,
                    "limits": limits,
                    "deltas": deltas,
                    "window": window_seconds,
                },
            )
            return [WindowCount(*row) for row in await cur.fetchall()]

    async def get(self, tenant: str, key: str) -> WindowState | None:
        async with self.db.connection() as c:
            cur = await c.execute(Q["rate_limit_get"], {"tenant": tenant, "key": key})
            row = await cur.fetchone()
        return WindowState(*row) if row else None

    async def reset(self, tenant: str, key: str) -> bool:
        async with self.db.connection() as c:
            cur = await c.execute(Q["rate_limit_reset"], {"tenant": tenant, "key": key})
            return await cur.fetchone() is not None
