"""The insert path: a planned enqueue (store/enqueue_plan.py) executed on a
connection. Every insert goes through here: one rule (job_insert), with two
shapes for jobs the rule has nothing to decide for (no idempotency key): the
bare single-row INSERT and the bulk COPY (decision 0018)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg.rows import dict_row

from queue_service.core.ids import uuid7
from queue_service.core.jobs import NewJob
from queue_service.store.db import Conn, Database, in_pipeline, json_text
from queue_service.store.enqueue_plan import (
    Enqueued,
    EnqueuePlan,
    EnqueueResult,
    IdempotencyRaceError,
    keyless_params,
)
from queue_service.store.queries import Q

RACE_ATTEMPTS = 3  # a key expiring between insert and read-back, again and again


async def insert_alone(db: Database, job: NewJob, scope: str | None = None) -> EnqueueResult:
    """One job in one autocommit statement: a keyless one as the bare INSERT
    (on the insert lane when a lane connection is free), any other as
    job_insert, ``scope`` setting the caller's tenant for row-level security."""
    if job.idempotency_key is None and scope is None:
        job_id = job.job_id or uuid7()
        params = keyless_params(job, job_id)
        lane = db.lane
        if lane is None or not await lane.try_execute(Q["job_insert_keyless"], params):
            async with db.connection() as c:
                await c.execute(Q["job_insert_keyless"], params)
        return Enqueued(job_id, True)
    for attempt in range(RACE_ATTEMPTS):
        plan = EnqueuePlan([job], scope)
        try:
            async with db.connection() as c:
                return (await insert_planned(c, plan, alone=True))[0]
        except IdempotencyRaceError:
            if attempt == RACE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


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


async def insert_planned(
    conn: Conn, plan: EnqueuePlan, alone: bool, copy: bool = True
) -> list[EnqueueResult]:
    """Insert a plan's jobs on ``conn`` and read each one's outcome.

    Keyless jobs that run now, in a batch, are COPYed (nothing to decide for
    them; ``copy=False`` sends them with the rest); everything else is
    job_insert, the one insert rule. ``alone``: the transaction is this
    call's own, so nothing else is staged.
    """
    if (
        len(plan.unique) == 1
        and plan.jobs[plan.unique[0]].idempotency_key is None
        and plan.scope is None
    ):
        # One keyless job: the bare INSERT (see job_insert_keyless).
        await conn.execute(Q["job_insert_keyless"], keyless_params(plan.jobs[0], plan.ids[0]))
        return [Enqueued(plan.ids[0], True)]
    # COPY is not allowed in pipeline mode.
    bulk = plan.copy_keyless() if copy and len(plan.unique) > 1 and not in_pipeline(conn) else []
    if bulk:
        # One simple query (no parameters): quiet the NOTICE that IF NOT
        # EXISTS raises on every batch, and make sure the stage exists.
        await conn.execute(Q["jobs_staging_prepare"], prepare=False)
        async with conn.cursor().copy(Q["job_copy_immediate"]) as stream:
            for i in bulk:
                await stream.write_row(copy_row(plan.ids[i], plan.jobs[i]))
        await conn.execute(
            Q["jobs_from_staging" if alone else "jobs_from_staging_emptying"],
            {"queues": sorted({plan.jobs[i].queue for i in bulk})},
        )
    rows: list[dict[str, Any]] = []
    if plan.sent:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(Q["job_insert"], plan.params())
        rows = await cur.fetchall()
    return plan.resolve(rows)
