"""Claims run on connections of their own, whose prepared statements run
their generic plans without JIT (decision 0030); every other statement keeps
PostgreSQL's own choice, and a process that never claims opens none."""

from __future__ import annotations

from typing import Any

import psycopg

from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime

CLAIMS_APP = "queue-service claims"


def _claim_connections(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            [CLAIMS_APP],
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_claims_reuse_one_generic_plan_without_jit(
    runtime: Runtime, database_url: str
) -> None:
    await runtime.manager.enqueue_many(
        [
            EnqueueRequest(type="test.echo", data={"value": "x"}, tenant_id="t1", created_by="u1")
            for _ in range(10)
        ]
    )
    for _ in range(10):  # one at a time: psycopg prepares from the second
        await runtime.store.claim("test", ["test.echo"], 1, "w1")

    async with runtime.store.db.claim_connection() as conn:
        cur = await conn.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE '-- job_claim' || chr(10) || '%'"
        )
        plans = await cur.fetchone()
        settings = await (await conn.execute("SELECT current_setting('jit')")).fetchone()
    assert plans is not None and plans[0] >= 8 and plans[1] == 0  # never re-planned
    assert settings == ("off",)

    async with runtime.store.db.connection() as conn:  # everything else: as PostgreSQL chooses
        mode: Any = await (await conn.execute("SHOW plan_cache_mode")).fetchone()
    assert mode == ("auto",)


async def test_a_process_opens_claim_connections_only_when_it_claims(
    runtime: Runtime, database_url: str
) -> None:
    await runtime.manager.enqueue(
        EnqueueRequest(type="test.echo", data={"value": "x"}, tenant_id="t1", created_by="u1")
    )
    assert _claim_connections(database_url) == 0

    claimed = await runtime.store.claim("test", ["test.echo"], 5, "w1")

    assert len(claimed) == 1
    assert _claim_connections(database_url) == 1
