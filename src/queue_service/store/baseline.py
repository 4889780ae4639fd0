"""The plain-SQL baseline loop (the fewest statements a queue can do with), in
process, so `queue-service bench --baseline` measures the ceiling in the
same minute against the same server and quotes a ratio.

It has none of the engine's guarantees (leases, fencing, retries, history);
it is what the hardware and PostgreSQL allow at best.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

DDL = """
CREATE TABLE jobs (
  id bigserial PRIMARY KEY,
  queue text NOT NULL,
  priority int NOT NULL DEFAULT 0,
  payload jsonb,
  state text NOT NULL DEFAULT 'queued',
  run_at timestamptz NOT NULL DEFAULT now(),
  attempts int NOT NULL DEFAULT 0,
  locked_at timestamptz
);
CREATE INDEX jobs_fetch_idx ON jobs (queue, priority, run_at, id) WHERE state = 'queued';
"""
INSERT_ONE = (
    "INSERT INTO jobs (queue, priority, payload, state, run_at, attempts) "
    "VALUES (%s, %s, %s, 'queued', now(), 0)"
)
INSERT_BATCH = (
    "INSERT INTO jobs (queue, priority, payload, state, run_at, attempts) "
    "SELECT %s, p, j, 'queued', now(), 0 FROM unnest(%s::int[], %s::jsonb[]) AS t(p, j)"
)
CLAIM = """
UPDATE jobs SET state = 'running', locked_at = now(), attempts = attempts + 1
WHERE id IN (
  SELECT id FROM jobs
  WHERE queue = %s AND state = 'queued' AND run_at <= now()
  ORDER BY priority, run_at, id
  FOR UPDATE SKIP LOCKED
  LIMIT %s)
RETURNING id, payload
"""
DONE_MANY = "UPDATE jobs SET state = 'done' WHERE id = ANY(%s)"
QUEUE = "default"


def setup(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS jobs")
        c.execute(DDL)


def insert_range(conn: psycopg.Connection[Any], start: int, stop: int, batch: int) -> float:
    """Seconds to insert jobs ``start..stop`` on ``conn`` (autocommit): the
    script's enqueue-single loop when ``batch`` is 1, its enqueue-batch loop
    otherwise; `queue-service bench` runs it in rounds beside ours."""
    t0 = time.perf_counter()
    if batch == 1:
        for i in range(start, stop):
            conn.execute(INSERT_ONE, (QUEUE, 0, Jsonb({"i": i, "ts": time.time()})))
    else:
        for lo in range(start, stop, batch):
            k = min(batch, stop - lo)
            now = time.time()
            conn.execute(
                INSERT_BATCH, (QUEUE, [0] * k, [Jsonb({"i": lo + j, "ts": now}) for j in range(k)])
            )
    return time.perf_counter() - t0


def enqueue_batch(conninfo: str, n: int, batch: int) -> float:
    """Jobs per second, ``n`` in batches (the drain's fill)."""
    with psycopg.connect(conninfo, autocommit=True) as c:
        return n / insert_range(c, 0, n, batch)


async def drain(conninfo: str, n: int, concurrency: int, claim: int) -> float:
    """Jobs per second from first pick-up to last completion."""
    state: dict[str, Any] = {"done": 0, "first": None, "last": None}

    async def loop() -> None:
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as c:
            while state["done"] < n:
                cur = await c.execute(CLAIM, (QUEUE, claim))
                rows = await cur.fetchall()
                if not rows:
                    return
                if state["first"] is None:
                    state["first"] = time.perf_counter()
                await c.execute(DONE_MANY, ([r[0] for r in rows],))
                state["done"] += len(rows)
                state["last"] = time.perf_counter()

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = (state["last"] or 0.0) - (state["first"] or 0.0)
    return state["done"] / elapsed if elapsed > 0 else 0.0
