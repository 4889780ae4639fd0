"""Inbound request limits shared by every API process through PostgreSQL,
counted locally between flushes.

The first request of a window (per tenant and key) asks the database; later
ones count in memory and a flusher adds them to the shared row every
``flush_interval`` seconds, reading back the count of every process. So the
database sees a few writes a second instead of one per request, and the
limit holds across processes to within what they admit in one flush interval
(documented in docs/decisions/0006-inbound-rate-limits.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from queue_service.store.db import Database
from queue_service.store.errors import is_transient
from queue_service.store.ratelimits import RateLimitStore

log = structlog.get_logger("queue_service.ratelimit")


@dataclass(slots=True)
class _Window:
    limit: int
    shared: int  # the count in PostgreSQL when last read, every process included
    pending: int  # counted here, not yet added to the shared row
    ends_at: float  # monotonic


@dataclass(frozen=True, slots=True)
class Count:
    key: str
    limit: int
    count: int
    seconds_left: float


class InboundLimiter:
    def __init__(self, db: Database, window_seconds: int = 60, flush_interval: float = 0.1) -> None:
        self._db = db
        self._window_seconds = window_seconds
        self._flush_interval = flush_interval
        self._windows: dict[tuple[str, str], _Window] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def hit(self, tenant: str, keys: Sequence[str], limits: Sequence[int]) -> list[Count]:
        """Count one request against each key; the counts include it."""
        now = time.monotonic()
        windows = [self._windows.get((tenant, k)) for k in keys]
        stale = [i for i, w in enumerate(windows) if w is None or now >= w.ends_at]
        if stale:
            # Counted in the database as they start (so not pending here).
            await self._start_windows(tenant, [keys[i] for i in stale], [limits[i] for i in stale])
            windows = [self._windows[(tenant, k)] for k in keys]
        counts = []
        for i, (key, limit, window) in enumerate(zip(keys, limits, windows, strict=True)):
            assert window is not None
            window.limit = limit
            if i not in stale:
                window.pending += 1
            counts.append(
                Count(key, limit, window.shared + window.pending, max(0.0, window.ends_at - now))
            )
        self._ensure_flusher()
        return counts

    async def _start_windows(self, tenant: str, keys: list[str], limits: list[int]) -> None:
        """Count this request in the database and learn the shared windows.

        Counts still pending for a window that ended locally belonged to that
        window: they are dropped with it.
        """
        async with self._db.tenant_transaction(tenant) as bound:
            rows = await RateLimitStore(bound).add(
                tenant, keys, limits, [1] * len(keys), self._window_seconds
            )
        now = time.monotonic()
        for row in rows:
            self._windows[(tenant, row.key)] = _Window(
                row.limit, row.count, 0, now + row.seconds_left
            )

    def _ensure_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name="rate-limit flusher")

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            try:
                await self.flush()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("could not share rate-limit counts", error=str(exc))

    async def flush(self) -> None:
        """Add every pending count to its shared row and read the totals back."""
        by_tenant: dict[str, list[tuple[str, _Window]]] = {}
        for (tenant, key), window in self._windows.items():
            if window.pending:
                by_tenant.setdefault(tenant, []).append((key, window))
        for tenant, items in by_tenant.items():
            keys = [k for k, _ in items]
            deltas = [w.pending for _, w in items]
            async with self._db.tenant_transaction(tenant) as bound:
                rows = await RateLimitStore(bound).add(
                    tenant, keys, [w.limit for _, w in items], deltas, self._window_seconds
                )
            now = time.monotonic()
            for row, (_, window), delta in zip(rows, items, deltas, strict=True):
                window.pending -= delta  # requests counted meanwhile stay pending
                window.shared = row.count
                window.ends_at = now + row.seconds_left

    def forget(self, tenant: str, key: str) -> None:
        """Drop local state after an operator reset the window."""
        self._windows.pop((tenant, key), None)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        with contextlib.suppress(Exception):
            await self.flush()
