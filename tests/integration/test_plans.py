"""The hot path's plans stay per-id index lookups whatever the statistics say
(docs/decisions/0017-plan-stable-hot-path.md).

The statistics are taken at the worst moment for a cached plan: every live
row waiting (most of them delayed), none active. Then a thousand jobs are
claimed, and each hot statement is prepared from its own text with the
parameters a worker sends, under ``plan_cache_mode = force_generic_plan``
(what PostgreSQL switches a prepared statement to after five runs). The plan
is read as JSON, never timed: a few thousand rows are enough, because the
planner's choice depends on the statistics, not on the size.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import ClientCursor

from queue_service.runtime.service import Runtime
from queue_service.store.db import ENGINE_ROLE
from queue_service.store.queries import Q
from tests.support.processors import echo_request as echo

QUEUE = "plans"
HELD = "plans-held"
TYPE = "plans.noop"
DELAYED = 60_000
READY = 1_000
HISTORY = 2_000
PRIORITIES = 10  # bench_seed_delayed spreads delayed rows over 1..10
ACKS = (
    "job_heartbeat_many",
    "job_complete_many",
    "job_finish_many",
    "job_release_many",
    "job_rescue_many",
    "job_retry_later",
    "job_snooze",
)
_PARAM = re.compile(r"%\((\w+)\)s")

Plan = dict[str, Any]


def _prepared(text: str) -> tuple[str, list[str]]:
    """A psycopg statement as server-side PREPARE text: ``%(x)s`` becomes ``$n``."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    return _PARAM.sub(number, text).replace("%%", "%"), names


def _nodes(plan: Plan, parent: Plan | None = None) -> Iterator[tuple[Plan, Plan | None]]:
    yield plan, parent
    for child in plan.get("Plans", []):
        yield from _nodes(child, plan)


@pytest.fixture
def worst_moment(database_url: str) -> Iterator[tuple[psycopg.Connection[Any], list[Any]]]:
    """Delayed, ready and finished rows; ANALYZE with all live rows waiting;
    then every ready job claimed. Yields an engine-role connection and the
    claimed (id, lease_token) rows."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Statistics stay those of the worst moment: no autoanalyze mid-test.
        conn.execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")
        seed = {"rows": DELAYED, "queue": QUEUE, "type": TYPE, "tenant": "t1"}
        conn.execute(Q["bench_seed_delayed"], seed)
        # The jobs to hold, in a queue of their own: the idle claim below then
        # meets only delayed rows, not the claimed rows' old index entries.
        conn.execute(Q["bench_seed_delayed"], seed | {"rows": READY, "queue": HELD})
        conn.execute(
            "UPDATE jobs SET run_at = now() - interval '1 minute', priority = 5 WHERE queue = %s",
            [HELD],
        )
        conn.execute(Q["bench_seed_finished"], {"rows": HISTORY, "days": 1})
        conn.execute(Q["bench_analyze"])
        conn.execute(f"SET ROLE {ENGINE_ROLE}")
        claim = {"queue": HELD, "types": [TYPE], "limit": READY, "worker": "w1"}
        claimed = conn.execute(Q["job_claim"], claim).fetchall()
        assert len(claimed) == READY
        conn.execute("SET plan_cache_mode = force_generic_plan")
        yield conn, [(row[0], row[7]) for row in claimed]


def _plan(
    conn: psycopg.Connection[Any], name: str, values: dict[str, Any], analyze: bool = False
) -> Plan:
    text, names = _prepared(Q[name])
    conn.execute("DEALLOCATE ALL")
    conn.execute(f"PREPARE hot AS {text}")
    options = "ANALYZE, BUFFERS, TIMING OFF, " if analyze else ""
    args = ", ".join(["%s"] * len(names))
    with conn.transaction(force_rollback=True):
        cur = ClientCursor(conn).execute(
            f"EXPLAIN ({options}FORMAT JSON) EXECUTE hot({args})",
            [values[n] for n in names],
        )
        row = cur.fetchone()
    assert row is not None
    plan: Plan = row[0][0]["Plan"]
    return plan


def _values(held: list[Any]) -> dict[str, Any]:
    batch = held[:100]
    ids, tokens = [h[0] for h in batch], [h[1] for h in batch]
    return {
        "ids": ids,
        "tokens": tokens,
        "results": [None] * len(ids),
        "errors": ["boom"] * len(ids),
        "dlq_ids": [uuid.uuid4() for _ in ids],
        "status": "failed",
        "worker": "w1",
        "workers": ["w1"] * len(ids),
        "id": ids[0],
        "token": tokens[0],
        "delay": 60.0,
        "error": "boom",
        "reason": "not now",
        "queue": QUEUE,
        "types": [TYPE],
        "limit": 100,
    }


def _per_row_rescans(plan: Plan) -> list[str]:
    """Every way a plan re-reads rows per outer row, or reads jobs beyond
    the rows it was asked about."""
    found = []
    for node, _ in _nodes(plan):
        kind = node["Node Type"]
        if kind == "Nested Loop" and "Join Filter" in node:
            # Pairs filtered after the fact: the inner side is read again for
            # every outer row. Fine over queue_pauses (a handful of rows), not
            # over jobs or a batch of input.
            inner = [n for n, _ in _nodes(node["Plans"][1])]
            if any(n.get("Relation Name") == "jobs" or "Function" in n["Node Type"] for n in inner):
                found.append(f"nested loop filtering pairs: {node['Join Filter']}")
        if node.get("Relation Name") != "jobs" or kind == "ModifyTable":
            continue
        if kind == "Bitmap Heap Scan":
            # `id = ANY (ARRAY(...))`: a bitmap of primary-key probes, one per id.
            child = node["Plans"][0]
            if child.get("Index Name") != "jobs_pkey" or "Index Cond" not in child:
                found.append(f"bitmap scan of jobs through {child.get('Index Name')}")
        elif kind not in ("Index Scan", "Index Only Scan"):
            found.append(f"{kind} on jobs")
        elif "Index Cond" not in node:
            found.append(f"whole-index scan of {node['Index Name']}")
    return found


def test_acks_look_each_job_up_by_primary_key(
    worst_moment: tuple[psycopg.Connection[Any], list[Any]],
) -> None:
    conn, held = worst_moment
    wrong: dict[str, list[str]] = {}
    for name in ACKS:
        plan = _plan(conn, name, _values(held))
        found = _per_row_rescans(plan)
        indexes = {n.get("Index Name") for n, _ in _nodes(plan) if n.get("Relation Name") == "jobs"}
        if indexes - {None} != {"jobs_pkey"}:
            found.append(f"jobs read through {sorted(i for i in indexes if i)}")
        if found:
            wrong[name] = found
    assert wrong == {}


def test_a_claim_probes_each_priority_up_to_now(
    worst_moment: tuple[psycopg.Connection[Any], list[Any]],
) -> None:
    conn, held = worst_moment
    plan = _plan(conn, "job_claim", _values(held))
    assert _per_row_rescans(plan) == []
    probes = [
        n
        for n, _ in _nodes(plan)
        if n.get("Index Name") == "jobs_fetch_idx" and "run_at" in n.get("Index Cond", "")
    ]
    assert probes, "the ready-rows probe is bounded by run_at in the index"
    assert all("priority =" in n["Index Cond"] for n in probes)


def test_a_claim_that_finds_nothing_reads_a_few_pages_per_priority(
    worst_moment: tuple[psycopg.Connection[Any], list[Any]],
) -> None:
    conn, held = worst_moment  # only delayed jobs wait in QUEUE
    plan = _plan(conn, "job_claim", _values(held), analyze=True)
    assert plan["Actual Rows"] == 0
    buffers = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    # Two index descents per priority present, whatever the backlog (measured:
    # 74 pages); walking the delayed rows reads the queue's whole stretch of
    # the fetch index (about 400 pages here, 6,000 at a million rows).
    assert buffers <= 12 * (PRIORITIES + 1), buffers


async def test_a_claim_walking_priorities_keeps_their_order_and_its_limit(
    runtime: Runtime,
) -> None:
    """The priority walk takes what the single ordered scan took: priorities
    ascending, oldest run_at first within one, never a delayed job, and no
    more than the limit even when it stops inside a priority."""
    base = datetime.now(UTC) - timedelta(minutes=5)

    async def enqueue(label: str, priority: int, at: datetime | None = None) -> UUID:
        delay = {"delay_ms": 60_000} if at is None else {"run_at": at}
        return (await runtime.manager.enqueue(echo(label, priority=priority, **delay))).job_id

    await enqueue("delayed first", 1)
    p2_late = await enqueue("p2 late", 2, base + timedelta(seconds=2))
    p2_early = await enqueue("p2 early", 2, base)
    p4 = await enqueue("p4", 4, base - timedelta(minutes=1))
    p9 = await enqueue("p9", 9, base - timedelta(minutes=2))
    first = await runtime.store.claim("test", ["test.echo"], 3, "w")
    assert [c.id for c in first] == [p2_early, p2_late, p4]
    rest = await runtime.store.claim("test", ["test.echo"], 3, "w")
    assert [c.id for c in rest] == [p9]
    assert await runtime.store.claim("test", ["test.echo"], 3, "w") == []


def test_a_claim_updates_what_it_picked_by_primary_key_after_a_busy_analyze(
    database_url: str,
) -> None:
    """Statistics taken while two queues each held 20,000 ready jobs, then a
    quarter of one drained: a generic plan that joins the picked ids back to
    jobs may hash-join a sequential scan of the whole table (57 ms per claim,
    measured). The update must reach the picked rows by primary key."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE jobs SET (autovacuum_enabled = false)")
        for queue in (QUEUE, HELD):
            seed = {"rows": 20_000, "queue": queue, "type": TYPE, "tenant": "t1"}
            conn.execute(Q["bench_seed_delayed"], seed)
        conn.execute("UPDATE jobs SET run_at = now() - interval '1 minute'")
        conn.execute(Q["bench_analyze"])
        conn.execute(f"SET ROLE {ENGINE_ROLE}")
        claim = {"queue": QUEUE, "types": [TYPE], "limit": 5_000, "worker": "w1"}
        claimed = [row[0] for row in conn.execute(Q["job_claim"], claim).fetchall()]
        conn.execute("RESET ROLE")
        conn.execute("DELETE FROM jobs WHERE id = ANY(%s)", [claimed])
        conn.execute(f"SET ROLE {ENGINE_ROLE}")
        conn.execute("SET plan_cache_mode = force_generic_plan")
        values = {"queue": QUEUE, "types": [TYPE], "limit": 100, "worker": "w1"}
        plan = _plan(conn, "job_claim", values)
    assert _per_row_rescans(plan) == []
