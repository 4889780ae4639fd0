"""Batch acknowledgements: every success that finishes while a flush is in
flight rides the next one, so a busy worker pays one commit for many jobs
and an idle one pays no waiting time at all.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import structlog

from queue_service.runtime.backoff import Backoff, is_transient
from queue_service.store import Store

log = structlog.get_logger("queue_service.completer")

MAX_BATCH = 1000


class Completer:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: list[tuple[UUID, int, Any, asyncio.Future[bool]]] = []
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, job_id: UUID, token: int, result: Any) -> asyncio.Future[bool]:
        """Queue a completion; the future says whether the lease still held."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((job_id, token, result, future))
        self._idle.clear()
        self._ready.set()
        return future

    async def run(self) -> None:
        """Flush until cancelled; transient database errors are retried."""
        backoff = Backoff()
        while True:
            await self._ready.wait()
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            if not self._pending:
                self._ready.clear()
            try:
                done = await self._store.complete_many([(i, t, r) for i, t, r, _ in batch])
            except Exception as exc:
                if not is_transient(exc):
                    done = await self._one_by_one(batch)
                else:
                    # Keep the batch: the jobs are done and must be acknowledged.
                    self._pending[:0] = batch
                    self._ready.set()
                    await backoff.wait(log, "acknowledging completed jobs", exc)
                    continue
            backoff.reset()
            for job_id, _, _, future in batch:
                if not future.done():
                    future.set_result(job_id in done)
            if not self._pending:
                self._idle.set()

    async def _one_by_one(
        self, batch: list[tuple[UUID, int, Any, asyncio.Future[bool]]]
    ) -> set[UUID]:
        """A batch PostgreSQL refused (a result it cannot store, such as a NUL
        character): acknowledge each alone, without the result if need be,
        so one bad result cannot hold the others back."""
        done: set[UUID] = set()
        for job_id, token, result, _ in batch:
            for attempt_result in (result, None):
                try:
                    done |= await self._store.complete_many([(job_id, token, attempt_result)])
                    break
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    log.error(
                        "job result could not be stored; completing without it",
                        job_id=str(job_id),
                        error=f"{type(exc).__name__}: {exc}",
                    )
        return done

    async def drain(self) -> None:
        """Wait until everything submitted has been flushed."""
        await self._idle.wait()
