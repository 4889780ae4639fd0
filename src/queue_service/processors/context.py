"""What a processor sees of its job: identity, attempt, its dependencies, and
a way to finish the job in the same transaction as its own writes (River's
JobCompleteTx). The engine lends the transaction through ``JobSession``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, LiteralString, Protocol

import structlog

from queue_service.core.jobs import ClaimedJob, EnqueueRequest

if TYPE_CHECKING:
    from queue_service.processors.deps import ProcessorDeps


def job_log(logger: Any, job: ClaimedJob) -> Any:
    """A logger carrying the job's identity, tenant and originating request id."""
    return logger.bind(
        job_id=str(job.id),
        job_type=job.type,
        attempt=job.attempt,
        tenant_id=job.tenant_id,
        request_id=job.request_id,
    )


class JobTransaction(Protocol):
    """A transaction that also completes the job when it commits.

    Set ``result`` for the job's result. ``conn`` is the open connection, for
    store methods that join a caller's transaction (``conn=tx.conn``).
    """

    result: Any

    @property
    def conn(self) -> Any: ...

    async def enqueue(self, request: EnqueueRequest) -> None:
        """Enqueue a follow-up job that exists only if this one completes."""

    async def execute(self, query: LiteralString, params: dict[str, Any] | None = None) -> None:
        """Write a processor's own rows (a plugin's tables) in this transaction."""

    async def fetch_one(
        self, query: LiteralString, params: dict[str, Any] | None = None
    ) -> tuple[Any, ...] | None: ...


class JobSession(Protocol):
    """What the engine lends a running job (implemented by the runtime)."""

    def transaction(self, job: ClaimedJob) -> AbstractAsyncContextManager[JobTransaction]:
        """A transaction that completes ``job`` when it commits, or raises
        LeaseLostError (and rolls back) if the lease went to another attempt."""

    async def enqueue(self, requests: Sequence[EnqueueRequest]) -> None:
        """Enqueue jobs now, in their own transaction."""


@dataclass(slots=True)
class JobContext:
    """Passed to every handler with its typed payload."""

    job: ClaimedJob
    worker_id: str
    session: JobSession
    deps: ProcessorDeps
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
        async with self.session.transaction(self.job) as tx:
            yield tx
        self.completed_in_transaction = True

    async def enqueue(self, request: EnqueueRequest) -> None:
        """Enqueue another job now, whatever becomes of this one."""
        await self.session.enqueue([request])
