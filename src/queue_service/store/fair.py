"""Fair tenants (sql/fair.sql, docs/decisions/0020-fair-tenants.md): the
claim of a fair queue, and the partial indexes that only fair queues have.

A fair queue's statements carry its name as an SQL literal (so a prepared
statement's generic plan can prove the queue's partial index usable); they
are composed here from the reviewed templates of sql/fair.sql with
psycopg.sql, once per queue, never from strings.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Sequence
from functools import cache

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from queue_service.core.jobs import ClaimedJob
from queue_service.store.db import Database
from queue_service.store.jobs import claimed_jobs
from queue_service.store.queries import Q

_PLAIN = re.compile(r"[a-z0-9_]{1,40}")


def fair_index_names(queue: str) -> tuple[str, str]:
    """(waiting index, active index) of a fair queue: ``jobs_fair_<queue>``
    when the name is a short lower-case identifier, else a digest of it
    (deterministic either way, so every process finds the same index)."""
    if _PLAIN.fullmatch(queue):
        stem = queue
    else:
        stem = "q" + hashlib.sha256(queue.encode()).hexdigest()[:16]
    return f"jobs_fair_{stem}", f"jobs_fair_{stem}_active"


@cache
def _statement(name: str, queue: str, index: str = "") -> sql.Composed:
    return sql.SQL(Q[name]).format(queue=sql.Literal(queue), index=sql.Identifier(index))


def ensure_fair_indexes(conninfo: str, queue: str, *, capped: bool) -> list[str]:
    """Build the queue's fair indexes if they are missing (CREATE INDEX
    CONCURRENTLY: inserts and claims go on meanwhile), rebuilding one a failed
    build left invalid; returns the names built. Runs as the connecting user,
    the tables' owner (the engine role may not create indexes); one process
    per queue at a time, under a session advisory lock."""
    waiting, active = fair_index_names(queue)
    wanted = [("fair_index_create", waiting)] + ([("fair_active_index_create", active)] * capped)
    built = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(Q["fair_index_lock"], {"queue": queue})
        try:
            for statement, index in wanted:
                row = conn.execute(Q["fair_index_valid"], {"name": index}).fetchone()
                if row is not None and row[0]:
                    continue
                if row is not None:  # left invalid by a failed build
                    conn.execute(_statement("fair_index_drop", queue, index))
                conn.execute(_statement(statement, queue, index))
                built.append(index)
        finally:
            conn.execute(Q["fair_index_unlock"], {"queue": queue})
    return built


class FairStore:
    db: Database

    async def claim_fair(
        self,
        queue: str,
        types: Sequence[str],
        limit: int,
        worker_id: str,
        *,
        cap: int | None = None,
        after: str = "",
    ) -> list[ClaimedJob]:
        """Claim up to ``limit`` runnable jobs of a fair queue, shared across
        the tenants with ready work (tenants after ``after`` first when not
        all get a turn); with ``cap``, no tenant goes past ``cap`` active jobs
        in the queue across all processes."""
        params = {
            "types": list(types),
            "limit": limit,
            "worker": worker_id,
            "cap": cap,
            "after": after,
        }
        claim = _statement("job_claim_fair", queue)
        async with (
            self.db.claim_connection() as c,
            c.transaction() if cap is not None else contextlib.nullcontext(),
        ):
            if cap is not None:
                await c.execute(Q["fair_claim_lock"], {"queue": queue})
            cur = c.cursor(row_factory=dict_row)
            await cur.execute(claim, params)
            rows = await cur.fetchall()
        return claimed_jobs(rows)
