"""The job hot path: insert, claim, complete, retry, fail, heartbeat, rescue.

One method per statement of sql/engine.sql; every write after a claim is
compare-and-set on the claim's lease token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from psycopg.pq import TransactionStatus

from queue_service.core.ids import uuid7
from queue_service.core.jobs import ClaimedJob, Job, NewJob, job_from_row
from queue_service.observability.redaction import redact_text
from queue_service.store.db import Conn, Database, in_pipeline, json_text
from queue_service.store.enqueue_plan import (
    Enqueued,
    EnqueuePlan,
    IdempotencyRaceError,
    insert_params,
    one_params,
    plan_ids,
)
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
        lane = self.db.lane
        if conn is None and len(jobs) == 1 and jobs[0].idempotency_key is None:
            # The common case: one autocommit statement, nothing to resolve;
            # on the insert lane when a lane connection is free.
            job_id = jobs[0].job_id or uuid7()
            params = one_params(jobs[0], job_id)
            if lane is None or not await lane.try_execute(Q["job_insert_keyless"], params):
                async with self.db.connection() as c:
                    await c.execute(Q["job_insert_keyless"], params)
            return [Enqueued(job_id, True)]
        if (
            conn is None
            and lane is not None
            and all(j.idempotency_key is None and j.runs_now for j in jobs)
        ):
            # A plain batch on its own: the same COPY and move, on the lane
            # when it is free (asyncpg's binary COPY: decision 0008).
            ids, _ = plan_ids(jobs)  # no keys, so no duplicates
            if await lane.try_copy(
                Q["jobs_staging_prepare"],
                Q["job_copy_immediate"],
                [copy_row(job_id, job) for job_id, job in zip(ids, jobs, strict=True)],
                Q["jobs_from_staging"],
                {"queues": sorted({j.queue for j in jobs})},
            ):
                return [Enqueued(job_id, True) for job_id in ids]
        for attempt in range(3):
            plan = EnqueuePlan(jobs)
            try:
                async with self.db.connection(conn) as c:
                    if len(jobs) == 1 and conn is None:
                        return await self._insert_and_resolve(c, plan, alone=True)
                    # Whether this transaction is ours alone (not a savepoint
                    # in the caller's, where other batches may be staged).
                    alone = c.info.transaction_status == TransactionStatus.IDLE
                    async with c.transaction():
                        return await self._insert_and_resolve(c, plan, alone)
            except IdempotencyRaceError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _insert_and_resolve(
        self, conn: Conn, plan: EnqueuePlan, alone: bool
    ) -> list[Enqueued]:
        inserted = await self._insert(conn, plan.jobs, plan.ids, plan.unique, alone)
        for tenant, keys in plan.record_inserted(inserted).items():
            cur = await conn.execute(
                Q["idempotency_key_get_many"], {"tenant": tenant, "keys": keys}
            )
            plan.record_live(tenant, {r[0]: (r[1], r[2]) for r in await cur.fetchall()})
        return plan.results()

    async def _insert(
        self,
        conn: Conn,
        jobs: Sequence[NewJob],
        ids: list[UUID],
        indexes: list[int],
        alone: bool,
    ) -> dict[UUID, Job | None]:
        """Insert the chosen jobs; maps the ids that went in to the job (single inserts).

        ``alone``: the transaction is this call's own, so nothing else is staged.
        """
        if len(indexes) == 1:
            job, job_id = jobs[indexes[0]], ids[indexes[0]]
            if job.idempotency_key is None:
                await conn.execute(Q["job_insert_keyless"], one_params(job, job_id))
                return {job_id: None}
            cur = await conn.execute(Q["job_insert_one"], one_params(job, job_id))
            return {row[0]: job_from_row(row) for row in await cur.fetchall()}
        # Keyless jobs that run now need no conflict handling: COPY them.
        copyable = not in_pipeline(conn)  # COPY is not allowed in pipeline mode
        bulk = [
            i for i in indexes if copyable and jobs[i].idempotency_key is None and jobs[i].runs_now
        ]
        in_bulk = set(bulk)
        rest = [i for i in indexes if i not in in_bulk]
        inserted: dict[UUID, Job | None] = {}
        if bulk:
            # One simple query (no parameters): quiet the NOTICE that IF NOT
            # EXISTS raises on every batch, and make sure the stage exists.
            await conn.execute(Q["jobs_staging_prepare"], prepare=False)
            async with conn.cursor().copy(Q["job_copy_immediate"]) as copy:
                for i in bulk:
                    await copy.write_row(copy_row(ids[i], jobs[i]))
            await conn.execute(
                Q["jobs_from_staging" if alone else "jobs_from_staging_emptying"],
                {"queues": sorted({jobs[i].queue for i in bulk})},
            )
            inserted.update((ids[i], None) for i in bulk)
        if rest:
            cur = await conn.execute(Q["job_insert_many"], insert_params(jobs, ids, rest))
            inserted.update((row[0], None) for row in await cur.fetchall())
        return inserted

    async def insert_one_as_tenant(self, job: NewJob, tenant: str) -> Enqueued | None:
        """Insert one job in one autocommit statement scoped to ``tenant``, the
        authenticated caller's (row-level security refuses a job for any
        other): the API's enqueue path.

        None when the job was not inserted (its idempotency key is live): the
        caller then tells a replay from a conflict on the general path.
        """
        job_id = job.job_id or uuid7()
        async with self.db.connection() as c:
            cur = await c.execute(Q["job_insert_one"], one_params(job, job_id, tenant))
            rows = await cur.fetchall()
        return Enqueued(job_id, True, job_from_row(rows[0])) if rows else None

    async def claim(
        self, queue: str, types: Sequence[str], limit: int, worker_id: str
    ) -> list[ClaimedJob]:
        """Claim up to ``limit`` runnable jobs, highest priority first."""
        async with self.db.connection() as c:
            cur = await c.execute(
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


def copy_row(job_id: UUID, job: NewJob) -> tuple[Any, ...]:
    """A job's row for job_copy_immediate (its column order)."""
    return (
        job_id,
        job.tenant_id,
        job.queue,
        job.type,
        job.priority,
        job.data_json or json_text(job.data),
        job.max_attempts,
        job.max_stalled,
        job.lease_seconds,
        job.created_by,
        job.request_id,
        None if job.trace_context is None else json_text(job.trace_context),
    )


def claimed_jobs(rows: Sequence[Sequence[Any]]) -> list[ClaimedJob]:
    """job_claim's rows as ClaimedJobs, highest priority first (UPDATE ...
    RETURNING gives no order)."""
    ordered = sorted(rows, key=lambda r: (r[12], r[13], r[0]))
    return [
        ClaimedJob(
            id=r[0],
            tenant_id=r[1],
            queue=r[2],
            type=r[3],
            data=r[4],
            attempt=r[5],
            max_attempts=r[6],
            lease_token=r[7],
            lease_seconds=r[8],
            request_id=r[9],
            trace_context=r[10],
            started_at=r[11],
        )
        for r in ordered
    ]
