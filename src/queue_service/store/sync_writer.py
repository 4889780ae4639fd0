"""Enqueue on a caller's synchronous psycopg connection: the same statements
and idempotency rules as the async store, for code that is not async."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg.pq import TransactionStatus

from queue_service.core.ids import uuid7
from queue_service.core.jobs import Job, NewJob, job_from_row
from queue_service.store.enqueue_plan import (
    Enqueued,
    EnqueuePlan,
    IdempotencyRaceError,
    insert_params,
    one_params,
)
from queue_service.store.queries import Q

SyncConn = psycopg.Connection[Any]


def enqueue_many_sync(conn: SyncConn, jobs: Sequence[NewJob]) -> list[Enqueued]:
    """Insert jobs on ``conn``, all or none, joining its transaction if one is
    open (a savepoint) or in one of their own.

    One job on an idle autocommit connection is a single statement, committed
    by itself.
    """
    if not jobs:
        return []
    alone = (
        len(jobs) == 1
        and conn.autocommit
        and conn.info.transaction_status == TransactionStatus.IDLE
    )
    if alone and jobs[0].idempotency_key is None:
        job_id = jobs[0].job_id or uuid7()
        conn.execute(Q["job_insert_keyless"], one_params(jobs[0], job_id))
        return [Enqueued(job_id, True)]
    for attempt in range(3):
        plan = EnqueuePlan(jobs)
        try:
            if alone:
                return _insert_and_resolve(conn, plan)
            with conn.transaction():
                return _insert_and_resolve(conn, plan)
        except IdempotencyRaceError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _insert_and_resolve(conn: SyncConn, plan: EnqueuePlan) -> list[Enqueued]:
    inserted = _insert(conn, plan)
    for tenant, keys in plan.record_inserted(inserted).items():
        rows = conn.execute(Q["idempotency_key_get_many"], {"tenant": tenant, "keys": keys})
        plan.record_live(tenant, {r[0]: (r[1], r[2]) for r in rows.fetchall()})
    return plan.results()


def _insert(conn: SyncConn, plan: EnqueuePlan) -> dict[UUID, Job | None]:
    if len(plan.unique) == 1:
        i = plan.unique[0]
        if plan.jobs[i].idempotency_key is None:
            conn.execute(Q["job_insert_keyless"], one_params(plan.jobs[i], plan.ids[i]))
            return {plan.ids[i]: None}
        cur = conn.execute(Q["job_insert_one"], one_params(plan.jobs[i], plan.ids[i]))
        return {row[0]: job_from_row(row) for row in cur.fetchall()}
    # A multi-row insert: COPY would need the staging table's temp-table
    # life cycle on a connection this module does not own.
    cur = conn.execute(Q["job_insert_many"], insert_params(plan.jobs, plan.ids, plan.unique))
    return {row[0]: None for row in cur.fetchall()}
