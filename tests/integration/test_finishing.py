"""How a job row becomes a finished_jobs row: one rule, the fragment
finished_from_done of engine.sql (decision 0028), taken by every statement
that ends a job. Its column list is held against the migrated table, and
each way a job ends is checked to carry every column of the job over."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg.rows import dict_row

from queue_service.runtime.service import Runtime
from queue_service.store.queries import Q, load_fragments

_SHAPE = re.compile(
    r"INSERT INTO finished_jobs \((?P<columns>[^)]*)\)\s*SELECT (?P<values>.*)\s+FROM done",
    re.DOTALL,
)
# What the ending decides; every other column is the job's own.
DECIDED = {"status", "finished_at", "last_error", "result"}
ENDINGS = ("job_complete_many", "job_finish_many", "job_cancel_waiting", "queue_clear")


def _names(listed: str) -> list[str]:
    return [name.strip() for name in listed.split(",")]


def test_the_fragment_writes_every_column_of_finished_jobs_in_table_order(
    database_url: str,
) -> None:
    """A column added to finished_jobs must be added to the rule too."""
    shape = _SHAPE.fullmatch(load_fragments()["finished_from_done"])
    assert shape is not None
    columns, values = _names(shape["columns"]), _names(shape["values"])
    with psycopg.connect(database_url) as conn:
        table = [
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND table_name = 'finished_jobs'"
                " ORDER BY ordinal_position"
            )
        ]
    assert columns == table
    # One value per column; the job's own columns by their own name.
    assert len(values) == len(columns)
    carried = [(c, v) for c, v in zip(columns, values, strict=True) if c not in DECIDED]
    assert [c for c, v in carried if c != v] == []
    for name in ENDINGS:
        assert " ".join(shape[0].split()) in " ".join(Q[name].split()), name


def _seed(conn: psycopg.Connection[Any], status: str, token: int | None) -> UUID:
    """A job with every column set, each to a value no other column has."""
    job_id = uuid4()
    conn.execute(
        "INSERT INTO jobs (id, tenant_id, queue, type, status, priority, data, attempts,"
        " max_attempts, stalled_count, max_stalled, lease_seconds, idempotency_key,"
        " created_by, request_id, trace_context, replay_of, created_at, run_at, started_at,"
        " lease_token, lease_expires_at, worker_id, last_error)"
        " VALUES (%(id)s, 't1', 'test', 'test.echo', %(status)s, 7, '{\"n\": 1}', 2, 9, 1, 4,"
        " 45, 'key-' || %(id)s, 'creator', 'req', '{\"traceparent\": \"tp\"}', gen_random_uuid(),"
        " now() - interval '3 hours', now() - interval '2 hours', now() - interval '1 hour',"
        " %(token)s, now() + interval '1 minute', 'w1', 'the previous attempt failed')",
        {"id": job_id, "status": status, "token": token},
    )
    return job_id


def _row(conn: psycopg.Connection[Any], finished: bool, job_id: UUID) -> dict[str, Any]:
    cur = conn.cursor(row_factory=dict_row)
    if finished:
        row = cur.execute("SELECT * FROM finished_jobs WHERE id = %s", [job_id]).fetchone()
    else:
        row = cur.execute("SELECT * FROM jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None
    return row


@pytest.mark.parametrize(
    ("ending", "status", "last_error", "result"),
    [
        ("complete", "completed", "the previous attempt failed", {"ok": 1}),
        ("fail", "failed", "boom", None),
        ("cancel active", "cancelled", "stopped", None),
        ("cancel waiting", "cancelled", "not wanted", None),
        ("clear queue", "cancelled", "queue cleared by ops", None),
    ],
)
async def test_every_way_a_job_ends_carries_the_job_into_its_finished_row(
    runtime: Runtime,
    database_url: str,
    ending: str,
    status: str,
    last_error: str,
    result: Any,
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        active = ending in ("complete", "fail", "cancel active")
        job_id = _seed(conn, "active" if active else "waiting", 42 if active else None)
        job = _row(conn, False, job_id)
        before = conn.execute("SELECT now()").fetchone()
    store = runtime.store
    if ending == "complete":
        assert await store.complete_many([(job_id, 42, result)]) == {job_id}
    elif ending == "fail":
        assert await store.finish_many([(job_id, 42, last_error)], "failed") == {job_id}
    elif ending == "cancel active":
        assert await store.finish_many([(job_id, 42, last_error)], "cancelled") == {job_id}
    elif ending == "cancel waiting":
        assert await store.cancel_job(job_id, "t1", last_error) == "cancelled"
    else:
        assert await store.clear_queue("test", "t1", "ops") == 1
    with psycopg.connect(database_url, autocommit=True) as conn:
        finished = _row(conn, True, job_id)
        after = conn.execute("SELECT now()").fetchone()
    assert before is not None and after is not None
    carried = {c: finished[c] for c in finished if c not in DECIDED}
    assert carried == {c: job[c] for c in carried}
    assert None not in carried.values()
    assert (finished["status"], finished["last_error"], finished["result"]) == (
        status,
        last_error,
        result,
    )
    assert before[0] <= finished["finished_at"] <= after[0]
