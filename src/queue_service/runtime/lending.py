"""The engine's side of a running job's context: transactions that complete
the job when they commit, and enqueues on its behalf (processors/context.py
states the contract; this is the only implementation)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, LiteralString

from queue_service.core.jobs import ClaimedJob, EnqueueRequest
from queue_service.errors import LeaseLostError
from queue_service.runtime.manager import JobManager
from queue_service.store import Conn


@dataclass(slots=True)
class EngineTransaction:
    """One open transaction of a running job (processors.context.JobTransaction)."""

    _conn: Conn
    _manager: JobManager
    result: Any = None

    @property
    def conn(self) -> Conn:
        return self._conn

    async def enqueue(self, request: EnqueueRequest) -> None:
        await self._manager.enqueue_many([request], conn=self._conn)

    async def execute(self, query: LiteralString, params: dict[str, Any] | None = None) -> None:
        await self._conn.execute(query, params)

    async def fetch_one(
        self, query: LiteralString, params: dict[str, Any] | None = None
    ) -> tuple[Any, ...] | None:
        cur = await self._conn.execute(query, params)
        return await cur.fetchone()


class EngineSession:
    """processors.context.JobSession on the job manager and its store."""

    def __init__(self, manager: JobManager) -> None:
        self._manager = manager

    @asynccontextmanager
    async def transaction(self, job: ClaimedJob) -> AsyncIterator[EngineTransaction]:
        store = self._manager.store
        async with store.db.transaction() as conn:
            tx = EngineTransaction(conn, self._manager)
            yield tx
            done = await store.complete_many([(job.id, job.lease_token, tx.result)], conn=conn)
            if job.id not in done:
                raise LeaseLostError(f"job {job.id} lost its lease before completing")

    async def enqueue(self, requests: Sequence[EnqueueRequest]) -> None:
        await self._manager.enqueue_many(requests)
