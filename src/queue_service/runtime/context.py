"""What a processor sees of its job: identity, attempt, and a way to finish
the job in the same transaction as its own writes (River's JobCompleteTx).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, LiteralString

import structlog

from queue_service.core.jobs import ClaimedJob
from queue_service.errors import QueueServiceError

if TYPE_CHECKING:
    from queue_service.runtime.manager import EnqueueRequest, JobManager
    from queue_service.store.db import Conn


def job_log(logger: Any, job: ClaimedJob) -> Any:
    """A logger carrying the job's identity, tenant and originating request id."""
    return logger.bind(
        job_id=str(job.id),
        job_type=job.type,
        attempt=job.attempt,
        tenant_id=job.tenant_id,
        request_id=job.request_id,
    )


class LeaseLostError(QueueServiceError):
    """The job's lease went to another attempt; this one must not finish it."""


@dataclass(slots=True)
class JobTransaction:
    """A transaction that will also complete the job when it commits."""

    _conn: Conn
    _manager: JobManager
    _job: ClaimedJob
    result: Any = None

    async def enqueue(self, request: EnqueueRequest) -> None:
        """Enqueue a follow-up job that exists only if this one completes."""
        await self._manager.enqueue_many([request], conn=self._conn)

    async def execute(self, query: LiteralString, params: dict[str, Any] | None = None) -> None:
        """Write a processor's own rows (a plugin's tables) in this transaction."""
        await self._conn.execute(query, params)

    async def fetch_one(
        self, query: LiteralString, params: dict[str, Any] | None = None
    ) -> tuple[Any, ...] | None:
        cur = await self._conn.execute(query, params)
        return await cur.fetchone()


@dataclass(slots=True)
class JobContext:
    """Passed to every handler with its typed payload."""

    job: ClaimedJob
    worker_id: str
    _manager: JobManager
    completed_in_transaction: bool = False
    _log: Any = field(default=None)

    @property
    def log(self) -> Any:
        """A logger bound to this job (made on first use: most jobs never log)."""
        if self._log is None:
            self._log = job_log(structlog.get_logger("queue_service.job"), self.job)
        return self._log

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def is_last_attempt(self) -> bool:
        return self.job.attempt >= self.job.max_attempts

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[JobTransaction]:
        """Do writes, enqueue follow-ups and complete the job, all or nothing.

        Set ``tx.result`` for the job's result. If the lease was lost the
        whole transaction rolls back and LeaseLostError is raised.
        """
        store = self._manager.store
        async with store.db.transaction() as conn:
            tx = JobTransaction(conn, self._manager, self.job)
            yield tx
            done = await store.complete_many(
                [(self.job.id, self.job.lease_token, tx.result)], conn=conn
            )
            if self.job.id not in done:
                raise LeaseLostError(f"job {self.job.id} lost its lease before completing")
        self.completed_in_transaction = True

    async def enqueue(self, request: EnqueueRequest) -> None:
        """Enqueue another job now, whatever becomes of this one."""
        await self._manager.enqueue_many([request])
