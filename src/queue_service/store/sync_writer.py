"""Enqueue on a caller's synchronous psycopg connection: the same statements
and the same insert rule (job_insert) as the async store, for code that is
not async."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from queue_service.core.ids import uuid7
from queue_service.core.jobs import NewJob
from queue_service.store.enqueue_plan import (
    Enqueued,
    EnqueuePlan,
    EnqueueResult,
    IdempotencyRaceError,
    first_conflict,
    keyless_params,
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
    if len(jobs) == 1 and jobs[0].idempotency_key is None:
        # One statement, nothing to decide: committed by itself, or with
        # the caller's transaction.
        job_id = jobs[0].job_id or uuid7()
        conn.execute(Q["job_insert_keyless"], keyless_params(jobs[0], job_id))
        return [Enqueued(job_id, True)]
    alone = conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE
    for attempt in range(3):
        # A multi-row insert is job_insert whole: COPY would need the
        # staging table's temp-table life cycle on a connection this module
        # does not own.
        plan = EnqueuePlan(jobs)
        try:
            if alone and len(jobs) == 1:
                return first_conflict(_insert(conn, plan))
            with conn.transaction():
                return first_conflict(_insert(conn, plan))
        except IdempotencyRaceError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _insert(conn: SyncConn, plan: EnqueuePlan) -> list[EnqueueResult]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(Q["job_insert"], plan.params())
        return plan.resolve(cur.fetchall())
