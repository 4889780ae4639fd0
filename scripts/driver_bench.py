"""Measure psycopg 3 against asyncpg on queue-service's claim/complete hot path.

Both drivers run the statements the store runs (``queue_service.store.queries.Q``,
read from the package's SQL files): psycopg as written (``%(name)s``), asyncpg
after a mechanical rewrite of each ``%(name)s`` to ``$n`` (one number per
distinct name, in order of first use); nothing else in the SQL changes. Per
driver and round it measures, in a scratch database built by the shipped
migrations:

(a) insert: ``job_insert_keyless`` N times (default 3000), sequentially, on one
    connection; jobs/s.
(b) drain: N jobs (default 20000) loaded by COPY (untimed), then K concurrent
    loops (default 4) each running ``job_claim`` (limit 25) then
    ``job_complete_many`` for what it claimed, until the queue is empty; jobs/s
    by the wall clock of the drain.
(c) drain CPU: this process's user+system CPU seconds (``resource.getrusage``)
    per 1000 jobs claimed and completed in (b): the driver's cost on the client.

psycopg runs ``AsyncConnection`` in autocommit with ``prepare_threshold=2`` and
text results, as the store does (``--prepare-threshold none`` for PgBouncer
mode, ``--psycopg-binary`` for binary results); asyncpg runs plain connections
(its statement cache prepares every statement) with orjson decoding jsonb, as
the store's psycopg hooks do. Claimed rows become ``ClaimedJob`` as in
``JobStore.claim``. By default each loop owns a connection, which isolates the
driver; ``--pool`` borrows a pooled connection (psycopg_pool / asyncpg's pool)
per statement, the store's shape, where asyncpg's pool runs its reset query (one
more round trip) on every release unless ``--asyncpg-skip-reset``. Drivers
alternate (A B, B A, A B, ...) over the rounds so drift hits both alike; the
tables are emptied and vacuumed, and a checkpoint taken, before each timed phase.
The bench connects as the URL's user (a superuser: row-level security is
bypassed, for both drivers alike).

Output: one JSON line per driver per round, then a summary line with the
medians and the psycopg/asyncpg ratio of each (a ratio below 1 on a rate, or
above 1 on CPU, is asyncpg's advantage).

Run from the repository root (about 30 s with the defaults):

    .venv/bin/python scripts/driver_bench.py \\
        --database-url postgresql://postgres@127.0.0.1:5432/postgres

It creates, and afterwards drops, the database ``queue_service_driver_bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import orjson
import psycopg
import psycopg_pool
from psycopg.rows import dict_row

from queue_service.core.ids import uuid7_many
from queue_service.store.databases import create_database, drop_database
from queue_service.store.db import json_text  # also installs the store's orjson hooks
from queue_service.store.jobs import claimed_jobs
from queue_service.store.lane import to_dollar
from queue_service.store.migrate import apply_migrations
from queue_service.store.queries import Q

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SCRATCH_DB = "queue_service_driver_bench"
STATEMENTS = ("job_insert_keyless", "job_claim", "job_complete_many")
TENANT = "bench"
QUEUE = "default"
JOB_TYPE = "bench.noop"
DRIVERS = ("psycopg", "asyncpg")

Row = Any  # a row read by name: a dict (psycopg) or a Record (asyncpg)
Params = dict[str, Any]


class Session(Protocol):
    """Runs one named statement and returns its rows."""

    async def fetch(self, name: str, params: Params) -> Sequence[Row]: ...


class Driver(Protocol):
    name: str

    def sessions(
        self, url: str, k: int, pooled: bool
    ) -> AbstractAsyncContextManager[list[Session]]:
        """``k`` sessions: one connection each, or ``k`` handles on one pool of ``k``."""
        ...


class PsycopgConn:
    def __init__(self, conn: psycopg.AsyncConnection[Any], binary: bool) -> None:
        self.conn = conn
        self.binary = binary

    async def fetch(self, name: str, params: Params) -> Sequence[Row]:
        # Rows by name, as the store reads them (asyncpg's Records index by name too).
        cur = self.conn.cursor(row_factory=dict_row, binary=self.binary)
        await cur.execute(Q[name], params)
        return await cur.fetchall()


class PsycopgPool:
    def __init__(
        self,
        pool: psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Any]],
        binary: bool,
    ) -> None:
        self.pool = pool
        self.binary = binary

    async def fetch(self, name: str, params: Params) -> Sequence[Row]:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row, binary=self.binary)
            await cur.execute(Q[name], params)
            return await cur.fetchall()


async def _autocommit(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.set_autocommit(True)


@dataclass
class Psycopg:
    prepare_threshold: int | None
    binary: bool = False
    name: str = "psycopg"

    @asynccontextmanager
    async def sessions(self, url: str, k: int, pooled: bool) -> AsyncIterator[list[Session]]:
        kwargs: dict[str, Any] = {"prepare_threshold": self.prepare_threshold}
        if pooled:
            async with psycopg_pool.AsyncConnectionPool(
                url, min_size=k, max_size=k, kwargs=kwargs, configure=_autocommit, open=False
            ) as pool:
                await pool.wait()
                yield [PsycopgPool(pool, self.binary)] * k
            return
        conns = [
            await psycopg.AsyncConnection.connect(url, autocommit=True, **kwargs) for _ in range(k)
        ]
        try:
            yield [PsycopgConn(c, self.binary) for c in conns]
        finally:
            for c in conns:
                await c.close()


_ASYNCPG_SQL = {name: to_dollar(Q[name]) for name in STATEMENTS}


def _args(name: str, params: Params) -> list[Any]:
    return [params[n] for n in _ASYNCPG_SQL[name][1]]


class AsyncpgConn:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def fetch(self, name: str, params: Params) -> Sequence[Row]:
        rows: list[Row] = await self.conn.fetch(_ASYNCPG_SQL[name][0], *_args(name, params))
        return rows


class AsyncpgPool:
    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def fetch(self, name: str, params: Params) -> Sequence[Row]:
        rows: list[Row] = await self.pool.fetch(_ASYNCPG_SQL[name][0], *_args(name, params))
        return rows


def _json_text_in(value: str) -> str:
    # The store serialises jsonb parameters itself (json_text), as with psycopg.
    return value


async def _asyncpg_codecs(conn: Any) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, schema="pg_catalog", encoder=_json_text_in, decoder=orjson.loads
        )


async def _no_reset(conn: Any) -> None:
    """Release without asyncpg's reset round trip (an open transaction is still rolled back)."""


@dataclass
class Asyncpg:
    skip_pool_reset: bool = False
    name: str = "asyncpg"

    @asynccontextmanager
    async def sessions(self, url: str, k: int, pooled: bool) -> AsyncIterator[list[Session]]:
        if pooled:
            pool = await asyncpg.create_pool(
                url,
                min_size=k,
                max_size=k,
                init=_asyncpg_codecs,
                reset=_no_reset if self.skip_pool_reset else None,
            )
            try:
                yield [AsyncpgPool(pool)] * k
            finally:
                await pool.close()
            return
        conns = [await asyncpg.connect(url) for _ in range(k)]
        try:
            for c in conns:
                await _asyncpg_codecs(c)
            yield [AsyncpgConn(c) for c in conns]
        finally:
            for c in conns:
                await c.close()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _payload(i: int) -> dict[str, Any]:
    return {
        "order_id": f"ord_{i:08d}",
        "amount_cents": 1000 + i % 9000,
        "currency": "EUR",
        "email": f"buyer{i}@example.com",
        "seats": ["A12", "A13"],
    }


def _trace(i: int) -> dict[str, str]:
    return {"traceparent": f"00-{i:032x}-{i:016x}-01"}


def _insert_params(n: int) -> list[Params]:
    """Keyless, run-now jobs: the common enqueue (enqueue_plan.keyless_params' shape)."""
    return [
        {
            "id": job_id,
            "tenant": TENANT,
            "queue": QUEUE,
            "type": JOB_TYPE,
            "priority": 5,
            "data": json_text(_payload(i)),
            "max_attempts": 3,
            "max_stalled": 1,
            "lease": 60,
            "key": None,
            "ttl": 86_400,
            "hash": None,
            "delay": 0.0,
            "run_at": None,
            "created_by": "bench",
            "request_id": f"req-{i}",
            "trace": json_text(_trace(i)),
            "replay_of": None,
        }
        for i, job_id in enumerate(uuid7_many(n))
    ]


def reset_tables(url: str) -> None:
    """Empty the job tables and settle the server, so every phase starts alike."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE jobs, finished_jobs, job_events, queue_idempotency_keys")
        for table in ("jobs", "finished_jobs", "job_events"):
            conn.execute(f"VACUUM ANALYZE {table}")
        conn.execute("CHECKPOINT")


# The untimed bulk load: straight into jobs (the bench connects as a superuser,
# so row-level security does not stand in the way of COPY).
_COPY_JOBS = """
COPY jobs (id, tenant_id, queue, type, priority, data, max_attempts, max_stalled,
           lease_seconds, created_by, request_id, trace_context)
FROM STDIN
"""


def load_jobs(url: str, n: int) -> None:
    """Untimed: COPY ``n`` runnable jobs in; run_at and created_at take their defaults."""
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction(), conn.cursor().copy(_COPY_JOBS) as copy:
            for i, job_id in enumerate(uuid7_many(n)):
                copy.write_row(
                    (
                        job_id,
                        TENANT,
                        QUEUE,
                        JOB_TYPE,
                        5,
                        json_text(_payload(i)),
                        3,
                        1,
                        60,
                        "bench",
                        f"req-{i}",
                        json_text(_trace(i)),
                    )
                )
        conn.execute("VACUUM ANALYZE jobs")
        conn.execute("CHECKPOINT")


async def bench_insert(driver: Driver, url: str, params: list[Params]) -> dict[str, float]:
    async with driver.sessions(url, 1, pooled=False) as (session,):
        cpu0, t0 = _cpu(), time.perf_counter()
        for p in params:
            rows = await session.fetch("job_insert_keyless", p)
            if len(rows) != 1:
                raise RuntimeError(f"{driver.name}: job_insert_keyless returned {len(rows)} rows")
        elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
    return {
        "insert_jobs_per_s": len(params) / elapsed,
        "insert_cpu_s_per_1k": cpu / len(params) * 1000,
    }


async def _drain_loop(session: Session, worker: str, batch: int) -> int:
    done = 0
    claim = {"queue": QUEUE, "types": [JOB_TYPE], "limit": batch, "worker": worker}
    while True:
        jobs = claimed_jobs(await session.fetch("job_claim", claim))
        if not jobs:
            return done
        if not isinstance(jobs[0].data, dict):
            raise TypeError(f"jsonb came back as {type(jobs[0].data).__name__}, not decoded")
        params = {
            "ids": [j.id for j in jobs],
            "tokens": [j.lease_token for j in jobs],
            "results": [json_text({"ok": True}) for _ in jobs],
        }
        done += len(await session.fetch("job_complete_many", params))


async def bench_drain(
    driver: Driver, url: str, n: int, k: int, batch: int, pooled: bool
) -> dict[str, float]:
    async with driver.sessions(url, k, pooled) as sessions:
        cpu0, t0 = _cpu(), time.perf_counter()
        counts = await asyncio.gather(
            *(_drain_loop(s, f"bench-{i}", batch) for i, s in enumerate(sessions))
        )
        elapsed, cpu = time.perf_counter() - t0, _cpu() - cpu0
    if sum(counts) != n:
        raise RuntimeError(f"{driver.name}: drained {sum(counts)} of {n} jobs")
    return {"drain_jobs_per_s": n / elapsed, "drain_cpu_s_per_1k": cpu / n * 1000}


def _server(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4 if "cpu" in k else 1) for k, v in values.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    url = create_database(args.database_url, SCRATCH_DB)
    threshold = None if args.prepare_threshold.lower() == "none" else int(args.prepare_threshold)
    drivers: dict[str, Driver] = {
        "psycopg": Psycopg(threshold, binary=args.psycopg_binary),
        "asyncpg": Asyncpg(skip_pool_reset=args.asyncpg_skip_reset),
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in DRIVERS}
    try:
        apply_migrations(url)
        _emit(
            {
                "kind": "setup",
                "server": _server(url),
                "statements_sha256": hashlib.sha256(
                    "\n".join(Q[name] for name in STATEMENTS).encode()
                ).hexdigest()[:16],
                "python": platform.python_version(),
                "psycopg": psycopg.__version__,
                "psycopg_impl": psycopg.pq.__impl__,
                "asyncpg": asyncpg.__version__,
                "cpus": os.cpu_count(),
                "prepare_threshold": threshold,
                "pooled": args.pool,
                "asyncpg_skip_reset": args.asyncpg_skip_reset,
                "psycopg_binary": args.psycopg_binary,
                "insert_jobs": args.insert_jobs,
                "drain_jobs": args.drain_jobs,
                "workers": args.workers,
                "batch": args.batch,
            }
        )
        for rnd in range(1, args.rounds + 1):
            order = DRIVERS if rnd % 2 else DRIVERS[::-1]
            for name in order:
                driver = drivers[name]
                reset_tables(url)
                figures = asyncio.run(bench_insert(driver, url, _insert_params(args.insert_jobs)))
                reset_tables(url)
                load_jobs(url, args.drain_jobs)
                figures |= asyncio.run(
                    bench_drain(driver, url, args.drain_jobs, args.workers, args.batch, args.pool)
                )
                results[name].append(figures)
                _emit({"kind": "round", "round": rnd, "driver": name, **_rounded(figures)})
    finally:
        if not args.keep:
            drop_database(args.database_url, SCRATCH_DB)
    medians = {
        name: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        for name, rows in results.items()
    }
    summary = {
        "kind": "summary",
        "rounds": args.rounds,
        "median": {name: _rounded(m) for name, m in medians.items()},
        "ratio_psycopg_over_asyncpg": {
            key: round(medians["psycopg"][key] / medians["asyncpg"][key], 3)
            for key in medians["psycopg"]
        },
        # The same ratio taken within each round (both drivers ran seconds
        # apart), then the median: less exposed to drift between rounds.
        "paired_ratio_median": {
            key: round(
                statistics.median(
                    p[key] / a[key]
                    for p, a in zip(results["psycopg"], results["asyncpg"], strict=True)
                ),
                3,
            )
            for key in medians["psycopg"]
        },
    }
    _emit(summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--database-url", default=DEFAULT_URL, help="a superuser conninfo URI")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--insert-jobs", type=int, default=3000)
    parser.add_argument("--drain-jobs", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=4, help="concurrent claim loops")
    parser.add_argument("--batch", type=int, default=25, help="job_claim limit")
    parser.add_argument(
        "--prepare-threshold", default="2", help="psycopg prepare_threshold, or 'none'"
    )
    parser.add_argument(
        "--pool", action="store_true", help="borrow a pooled connection per statement"
    )
    parser.add_argument(
        "--psycopg-binary",
        action="store_true",
        help="psycopg asks for binary results (the store uses text, the default)",
    )
    parser.add_argument(
        "--asyncpg-skip-reset",
        action="store_true",
        help="with --pool: release asyncpg connections without Connection.reset()'s "
        "extra round trip, as psycopg_pool releases an idle connection",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
