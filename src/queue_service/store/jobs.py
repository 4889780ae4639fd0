"""The job hot path: insert, claim, complete, retry, fail, heartbeat, rescue.

One method per statement of sql/engine.sql; every write after a claim is
compare-and-set on the claim's lease token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from queue_service.core.ids import uuid7
from queue_service.core.jobs import ClaimedJob, NewJob
from queue_service.observability.redaction import redact_text
from queue_service.store.db import Conn, Database, json_text
from queue_service.store.enqueue_plan import (
    Enqueued,
    EnqueuePlan,
    EnqueueResult,
    IdempotencyRaceError,
    first_conflict,
    plan_ids,
)
from queue_service.store.insert import RACE_ATTEMPTS, copy_row, insert_alone, insert_planned
from queue_service.store.queries import Q


@dataclass(frozen=True, slots=True)
class ExpiredLease:
    id: UUID
    lease_token: int
    stalled_count: int
    max_stalled: int
    attempts: int
    max_attempts: int
    worker_id: str | None

    @property
    def exhausted(self) -> bool:
        """No rescue left: too many stalls, or the stalled attempt was the last."""
        return self.stalled_count >= self.max_stalled or self.attempts >= self.max_attempts


@dataclass(frozen=True, slots=True)
class RescueReport:
    rescued: list[UUID]
    failed: list[UUID]


FinalStatus = Literal["failed", "cancelled"]


class JobStore:
    """Statements on live jobs."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def enqueue_many(
        self, jobs: Sequence[NewJob], conn: Conn | None = None
    ) -> list[Enqueued]:
        """Insert jobs, all or none; idempotency keys as SPEC §4.

        A live key with the same payload answers with its existing job
        (``created=False``); with another payload it raises
        IdempotencyConflictError and nothing is written.
        """
        if not jobs:
            return []
        if conn is None and len(jobs) == 1:
            # One job on its own: alone, or in a window that shares a commit
            # with the enqueues running beside it (store/coalesce.py).
            return first_conflict([await self._insert_one(jobs[0])])
        lane = self.db.lane
        if (
            conn is None
            and lane is not None
            and all(j.idempotency_key is None and j.runs_now for j in jobs)
        ):
            # A plain batch on its own: the same COPY and move, on the lane
            # when it is free (asyncpg's binary COPY: decision 0008).
            ids = plan_ids(jobs)  # no keys, so nothing to resolve
            if await lane.try_copy(
                Q["jobs_staging_prepare"],
                Q["job_copy_immediate"],
                [copy_row(job_id, job) for job_id, job in zip(ids, jobs, strict=True)],
                Q["jobs_from_staging"],
                {"queues": sorted({j.queue for j in jobs})},
            ):
                return [Enqueued(job_id, True) for job_id in ids]
        for attempt in range(RACE_ATTEMPTS):
            plan = EnqueuePlan(jobs)
            try:
                async with self.db.connection(conn) as c:
                    # Whether this transaction is ours alone (not a savepoint
                    # in the caller's, where other batches may be staged).
                    alone = c.info.transaction_status == TransactionStatus.IDLE
                    async with c.transaction():
                        return first_conflict(await insert_planned(c, plan, alone))
            except IdempotencyRaceError:
                if attempt == RACE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def insert_one_as_tenant(self, job: NewJob, tenant: str) -> EnqueueResult:
        """Insert one job scoped to ``tenant``, the authenticated caller's
        (row-level security refuses a job for any other): the API's enqueue
        path, alone or in a coalesced window. Its outcome: the job as
        inserted, a replay of the job its key names, or a conflict."""
        return await self._insert_one(job, tenant)

    async def _insert_one(self, job: NewJob, scope: str | None = None) -> EnqueueResult:
        coalescer = self.db.coalescer
        if coalescer is None:
            return await insert_alone(self.db, job, scope)
        return await coalescer.submit(job, scope)

    async def claim(
        self, queue: str, types: Sequence[str], limit: int, worker_id: str
    ) -> list[ClaimedJob]:
        """Claim up to ``limit`` runnable jobs, highest priority first."""
        async with self.db.claim_connection() as c:
            cur = c.cursor(row_factory=dict_row)
            await cur.execute(
                Q["job_claim"],
                {"queue": queue, "types": list(types), "limit": limit, "worker": worker_id},
            )
            rows = await cur.fetchall()
        return claimed_jobs(rows)

    async def complete_many(
        self, items: Sequence[tuple[UUID, int, Any]], conn: Conn | None = None
    ) -> set[UUID]:
        """Finish successful attempts; returns the ids whose lease still held."""
        params = {
            "ids": [i[0] for i in items],
            "tokens": [i[1] for i in items],
            "results": [None if i[2] is None else json_text(i[2]) for i in items],
        }
        async with self.db.connection(conn) as c:
            cur = await c.execute(Q["job_complete_many"], params)
            return {row[0] for row in await cur.fetchall()}

    async def snooze(
        self, job_id: UUID, token: int, delay_seconds: float, reason: str, worker_id: str
    ) -> bool:
        """Put an attempt back without counting it; False if the lease was lost."""
        async with self.db.connection() as c:
            cur = await c.execute(
                Q["job_snooze"],
                {
                    "id": job_id,
                    "token": token,
                    "delay": delay_seconds,
                    "reason": redact_text(reason),
                    "worker": worker_id,
                },
            )
            return await cur.fetchone() is not None

    async def retry_later(
        self, job_id: UUID, token: int, delay_seconds: float, error: str, worker_id: str
    ) -> bool:
        async with self.db.connection() as c:
            cur = await c.execute(
                Q["job_retry_later"],
                {
                    "id": job_id,
                    "token": token,
                    "delay": delay_seconds,
                    "error": redact_text(error),
                    "worker": worker_id,
                },
            )
            return await cur.fetchone() is not None

    async def finish_many(
        self,
        items: Sequence[tuple[UUID, int, str]],
        status: FinalStatus,
        conn: Conn | None = None,
    ) -> set[UUID]:
        """End attempts for good: ``failed`` (dead-lettered) or ``cancelled``.
        Error text is redacted here, whoever wrote it: it becomes last_error,
        the dead letter's error and the history row, read by operators."""
        params = {
            "ids": [i[0] for i in items],
            "tokens": [i[1] for i in items],
            "errors": [redact_text(i[2]) for i in items],
            "dlq_ids": [uuid7() for _ in items],
            "status": status,
        }
        async with self.db.connection(conn) as c:
            cur = await c.execute(Q["job_finish_many"], params)
            return {row[0] for row in await cur.fetchall()}

    async def release_many(self, items: Sequence[tuple[UUID, int]], worker_id: str) -> set[UUID]:
        """Give claimed jobs back to waiting; the attempt does not count."""
        params = {
            "ids": [i[0] for i in items],
            "tokens": [i[1] for i in items],
            "worker": worker_id,
        }
        async with self.db.connection() as c:
            cur = await c.execute(Q["job_release_many"], params)
            return {row[0] for row in await cur.fetchall()}

    async def heartbeat_many(self, items: Sequence[tuple[UUID, int]]) -> dict[UUID, bool]:
        """Extend held leases; maps each still-held job to its cancel request."""
        params = {"ids": [i[0] for i in items], "tokens": [i[1] for i in items]}
        async with self.db.connection() as c:
            cur = await c.execute(Q["job_heartbeat_many"], params)
            return {row[0]: row[1] for row in await cur.fetchall()}

    async def rescue_expired(self, limit: int = 500) -> RescueReport:
        """Rescue jobs whose lease expired, or fail them once out of rescues."""
        async with self.db.transaction() as c:
            cur = await c.execute(Q["job_expired_leases"], {"limit": limit})
            expired = [ExpiredLease(*row) for row in await cur.fetchall()]
            to_fail = [e for e in expired if e.exhausted]
            to_rescue = [e for e in expired if not e.exhausted]
            failed: set[UUID] = set()
            if to_fail:
                failed = await self.finish_many(
                    [(e.id, e.lease_token, _stalled_error(e)) for e in to_fail], "failed", c
                )
            rescued: list[UUID] = []
            if to_rescue:
                cur = await c.execute(
                    Q["job_rescue_many"],
                    {
                        "ids": [e.id for e in to_rescue],
                        "tokens": [e.lease_token for e in to_rescue],
                        "workers": [e.worker_id for e in to_rescue],
                    },
                )
                rescued = [row[0] for row in await cur.fetchall()]
        return RescueReport(rescued=rescued, failed=sorted(failed))

    async def bench_seed_delayed(self, rows: int, queue: str, job_type: str, tenant: str) -> None:
        """``rows`` waiting jobs due in a day (the drain benchmark's --delayed)."""
        params = {"rows": rows, "queue": queue, "type": job_type, "tenant": tenant}
        async with self.db.connection() as c:
            await c.execute(Q["bench_seed_delayed"], params)

    async def db_now(self) -> datetime:
        async with self.db.connection() as c:
            cur = await c.execute(Q["db_now"])
            row = await cur.fetchone()
            assert row is not None
            return row[0]  # type: ignore[no-any-return]


def _stalled_error(e: ExpiredLease) -> str:
    if e.stalled_count >= e.max_stalled:
        return (
            f"stalled {e.stalled_count + 1} times (max {e.max_stalled}): "
            f"lease expired on worker {e.worker_id or '?'}"
        )
    return (
        f"stalled on its last attempt ({e.attempts}/{e.max_attempts}): "
        f"lease expired on worker {e.worker_id or '?'}"
    )


def claimed_jobs(rows: Sequence[Mapping[str, Any]]) -> list[ClaimedJob]:
    """job_claim's rows (read by name) as ClaimedJobs, highest priority first
    (UPDATE ... RETURNING gives no order)."""
    ordered = sorted(rows, key=lambda r: (r["priority"], r["run_at"], r["id"]))
    return [
        ClaimedJob(
            id=r["id"],
            tenant_id=r["tenant_id"],
            queue=r["queue"],
            type=r["type"],
            data=r["data"],
            attempt=r["attempts"],
            max_attempts=r["max_attempts"],
            lease_token=r["lease_token"],
            lease_seconds=r["lease_seconds"],
            request_id=r["request_id"],
            trace_context=r["trace_context"],
            started_at=r["started_at"],
        )
        for r in ordered
    ]
