"""Statements an operator or the leader runs: job look-ups and management,
queue counts and pauses, the DLQ, retention, worker registry, leader lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from psycopg.rows import dict_row

from queue_service.core.jobs import Job, JobStatus, job_from_row
from queue_service.store.db import Conn, Database
from queue_service.store.queries import Q

_FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)
_FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
_MIN_UUID = UUID(int=0)
_MAX_UUID = UUID(int=(1 << 128) - 1)
# The operators' search reads this many newest jobs of each finished status
# at most (store/sql/lookups.sql, decision 0025).
SEARCH_WINDOW = 5000


@dataclass(frozen=True, slots=True)
class QueueCounts:
    name: str
    waiting: int = 0
    delayed: int = 0
    active: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    oldest_waiting_age_seconds: float | None = None

    def counts(self) -> dict[str, int]:
        return {
            "waiting": self.waiting,
            "delayed": self.delayed,
            "active": self.active,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
        }


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: UUID
    tenant_id: str
    original_job_id: UUID
    queue: str
    type: str
    data: dict[str, Any]
    error: str | None
    attempts: int
    created_by: str | None
    failed_at: datetime
    replayed_job_id: UUID | None
    replayed_at: datetime | None


@dataclass(frozen=True, slots=True)
class JobEvent:
    event: str
    attempt: int
    worker_id: str | None
    started_at: datetime | None
    at: datetime
    error: str | None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    queues: list[str]
    started_at: datetime
    heartbeat_at: datetime


@dataclass(frozen=True, slots=True)
class UnservedType:
    """Ready jobs of one (queue, type) that no live worker serves."""

    queue: str
    type: str
    waiting: int
    oldest_seconds: float


CancelOutcome = Literal["cancelled", "cancel_requested"]


class AdminStore:
    """Statements outside the hot path."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_job(
        self, job_id: UUID, tenant: str | None = None, conn: Conn | None = None
    ) -> Job | None:
        return (await self.get_jobs([job_id], tenant, conn)).get(job_id)

    async def get_jobs(
        self, job_ids: Sequence[UUID], tenant: str | None = None, conn: Conn | None = None
    ) -> dict[UUID, Job]:
        """The jobs of ``job_ids`` that exist (within ``tenant``), in one statement."""
        async with self.db.connection(conn) as c:
            cur = c.cursor(row_factory=dict_row)
            await cur.execute(Q["job_get_many"], {"ids": list(job_ids), "tenant": tenant})
            return {row["id"]: job_from_row(row) for row in await cur.fetchall()}

    async def job_events(self, job_id: UUID) -> list[JobEvent]:
        async with self.db.connection() as c:
            cur = await c.execute(Q["job_events_list"], {"id": job_id})
            return [JobEvent(*row) for row in await cur.fetchall()]

    async def cancel_job(self, job_id: UUID, tenant: str, reason: str) -> CancelOutcome | None:
        """Cancel a waiting job, or ask its worker to stop an active one."""
        async with self.db.transaction() as c:
            params = {"id": job_id, "tenant": tenant, "reason": reason}
            cur = await c.execute(Q["job_cancel_waiting"], params)
            if await cur.fetchone():
                return "cancelled"
            cur = await c.execute(Q["job_request_cancel"], params)
            if await cur.fetchone():
                return "cancel_requested"
        return None

    async def retry_job(self, job_id: UUID, tenant: str, actor: str) -> bool:
        async with self.db.connection() as c:
            cur = await c.execute(
                Q["job_retry_finished"], {"id": job_id, "tenant": tenant, "actor": actor}
            )
            return await cur.fetchone() is not None

    async def list_jobs(
        self,
        queue: str,
        tenant: str,
        status: JobStatus,
        limit: int,
        after: tuple[datetime, UUID] | None = None,
    ) -> list[Job]:
        """Keyset page of whole jobs in one statement: live by (run_at, id),
        finished newest first."""
        if status in (JobStatus.WAITING, JobStatus.DELAYED, JobStatus.ACTIVE):
            at, after_id = after or (_FAR_PAST, _MIN_UUID)
            query = Q["job_page_live"]
            params: dict[str, Any] = {"after_at": at, "after_id": after_id}
        else:
            at, after_id = after or (_FAR_FUTURE, _MAX_UUID)
            query = Q["job_page_finished"]
            params = {"before_at": at, "before_id": after_id}
        params.update(queue=queue, tenant=tenant, status=status.value, limit=limit)
        async with self.db.connection() as c:
            cur = c.cursor(row_factory=dict_row)
            await cur.execute(query, params)
            return [job_from_row(row) for row in await cur.fetchall()]

    async def search_jobs(
        self, queue: str, tenant: str, term: str, limit: int, window: int = SEARCH_WINDOW
    ) -> list[Job]:
        """A tenant's jobs in ``queue`` whose type or idempotency key is ``term``,
        live first then finished, each side newest first (at most ``limit`` each);
        finished ones among the newest ``window`` of each finished status."""
        params = {"queue": queue, "tenant": tenant, "term": term, "limit": limit}
        async with self.db.connection() as c:
            cur = c.cursor(row_factory=dict_row)
            await cur.execute(Q["job_search"], {**params, "window": window})
            return [job_from_row(row) for row in await cur.fetchall()]

    async def job_trace_context(self, job_id: UUID, tenant: str) -> dict[str, str] | None:
        """The trace context stored with a live or finished job (None if untraced)."""
        async with self.db.connection() as c:
            cur = await c.execute(Q["job_trace_context"], {"id": job_id, "tenant": tenant})
            row = await cur.fetchone()
            return row[0] if row and isinstance(row[0], dict) else None

    async def queue_counts(self, tenant: str | None = None) -> dict[str, QueueCounts]:
        async with self.db.connection() as c:
            cur = await c.execute(Q["queue_counts"], {"tenant": tenant})
            return {row[0]: QueueCounts(*row) for row in await cur.fetchall()}

    async def pause_queue(self, queue: str, tenant: str, actor: str) -> None:
        async with self.db.connection() as c:
            await c.execute(Q["queue_pause"], {"queue": queue, "tenant": tenant, "actor": actor})

    async def resume_queue(self, queue: str, tenant: str) -> bool:
        async with self.db.connection() as c:
            cur = await c.execute(Q["queue_resume"], {"queue": queue, "tenant": tenant})
            return await cur.fetchone() is not None

    async def paused_queues(self) -> list[tuple[str, str, str | None, datetime]]:
        async with self.db.connection() as c:
            cur = await c.execute(Q["queue_pauses_list"])
            return [(r[0], r[1], r[2], r[3]) for r in await cur.fetchall()]

    async def clear_queue(self, queue: str, tenant: str | None, actor: str) -> int:
        async with self.db.connection() as c:
            cur = await c.execute(
                Q["queue_clear"], {"queue": queue, "tenant": tenant, "actor": actor}
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def list_dead_letters(
        self,
        tenant: str | None,
        limit: int,
        *,
        queue: str | None = None,
        job_type: str | None = None,
        error_contains: str | None = None,
        failed_after: datetime | None = None,
        failed_before: datetime | None = None,
        unreplayed_only: bool = False,
        before: tuple[datetime, UUID] | None = None,
    ) -> list[DeadLetter]:
        """Newest first; ``before`` is the keyset cursor (failed_at, id)."""
        at, before_id = before or (_FAR_FUTURE, _MAX_UUID)
        params = {
            "tenant": tenant,
            "queue": queue,
            "type": job_type,
            "error": error_contains,
            "after": failed_after,
            "until": failed_before,
            "unreplayed": unreplayed_only,
            "before_at": at,
            "before_id": before_id,
            "limit": limit,
        }
        async with self.db.connection() as c:
            cur = await c.execute(Q["dlq_list"], params)
            return [DeadLetter(*row) for row in await cur.fetchall()]

    async def get_dead_letter(self, dlq_id: UUID, tenant: str | None = None) -> DeadLetter | None:
        async with self.db.connection() as c:
            cur = await c.execute(Q["dlq_get"], {"id": dlq_id, "tenant": tenant})
            row = await cur.fetchone()
        return DeadLetter(*row) if row else None

    async def mark_dead_letter_replayed(
        self, dlq_id: UUID, job_id: UUID, tenant: str | None, conn: Conn
    ) -> DeadLetter | None:
        """Take the one-time right to replay; None if gone or already replayed."""
        cur = await conn.execute(
            Q["dlq_mark_replayed"], {"id": dlq_id, "job_id": job_id, "tenant": tenant}
        )
        row = await cur.fetchone()
        return DeadLetter(*row) if row else None

    async def delete_dead_letter(self, dlq_id: UUID, tenant: str | None = None) -> bool:
        async with self.db.connection() as c:
            cur = await c.execute(Q["dlq_delete"], {"id": dlq_id, "tenant": tenant})
            return await cur.fetchone() is not None

    async def purge_dead_letters(self, days: int, limit: int = 1000) -> int:
        return await self._count(Q["dlq_purge"], {"days": days, "limit": limit})

    async def purge_finished(
        self,
        days: int,
        prefixes: list[str],
        exclude: list[str],
        archive: bool,
        limit: int = 1000,
    ) -> int:
        return await self._count(
            Q["finished_purge"],
            {
                "days": days,
                "prefixes": prefixes,
                "exclude": exclude,
                "archive": archive,
                "limit": limit,
            },
        )

    async def purge_expired_keys(self, limit: int = 1000) -> int:
        return await self._count(Q["idempotency_key_purge_expired"], {"limit": limit})

    async def purge_events(self, days: int, limit: int = 1000) -> int:
        return await self._count(Q["job_events_purge"], {"days": days, "limit": limit})

    async def _count(self, query: Any, params: dict[str, Any]) -> int:
        async with self.db.connection() as c:
            cur = await c.execute(query, params)
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def upsert_worker(
        self, worker_id: str, host: str, pid: int, queues: list[str], types: list[str]
    ) -> None:
        async with self.db.connection() as c:
            await c.execute(
                Q["worker_upsert"],
                {"id": worker_id, "host": host, "pid": pid, "queues": queues, "types": types},
            )

    async def unserved_job_types(
        self, live_seconds: float, grace_seconds: float
    ) -> list[UnservedType]:
        async with self.db.connection() as c:
            cur = await c.execute(
                Q["job_types_unserved"],
                {"live_seconds": live_seconds, "grace_seconds": grace_seconds},
            )
            return [
                UnservedType(queue=r[0], type=r[1], waiting=int(r[2]), oldest_seconds=float(r[3]))
                for r in await cur.fetchall()
            ]

    async def delete_worker(self, worker_id: str) -> None:
        async with self.db.connection() as c:
            await c.execute(Q["worker_delete"], {"id": worker_id})

    async def prune_workers(self, silent_seconds: float) -> None:
        async with self.db.connection() as c:
            await c.execute(Q["worker_prune"], {"seconds": silent_seconds})

    async def list_workers(self) -> list[WorkerInfo]:
        async with self.db.connection() as c:
            cur = await c.execute(Q["worker_list"])
            return [WorkerInfo(*row) for row in await cur.fetchall()]

    async def bench_window(self, job_type: str) -> tuple[datetime | None, datetime | None, int]:
        async with self.db.connection() as c:
            cur = await c.execute(Q["bench_window"], {"type": job_type})
            row = await cur.fetchone()
            assert row is not None
            return row[0], row[1], int(row[2])

    async def bench_event_count(self, job_type: str, event: str) -> int:
        async with self.db.connection() as c:
            cur = await c.execute(Q["bench_event_count"], {"type": job_type, "event": event})
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def bench_latencies(self, job_type: str) -> list[float]:
        async with self.db.connection() as c:
            cur = await c.execute(Q["bench_latencies"], {"type": job_type})
            return [float(row[0]) for row in await cur.fetchall()]
