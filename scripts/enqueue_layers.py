"""Where a single enqueue's time goes, layer by layer (docs/decisions/0008).

Each variant inserts one job per statement into a scratch database built by
the shipped migrations, beside the plain-SQL baseline loop's insert on its
own scratch database. Variants run in alternating rounds so they share the
same minutes of disk and CPU; the output is wall time and this process's CPU
per job, and the baseline's rate over each variant's:

    .venv/bin/python scripts/enqueue_layers.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Variants: the baseline's insert (sync psycopg); our keyless insert statement
on a sync psycopg connection, an async one, and through the psycopg pool;
`JobManager.enqueue` with the insert lane off and on.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

import psycopg
from psycopg.types.json import Jsonb

from queue_service.bench import _request
from queue_service.core.ids import uuid7
from queue_service.runtime.service import freeze_startup_heap, loop_factory, open_runtime
from queue_service.settings import load_settings
from queue_service.store import baseline
from queue_service.store.databases import create_database, drop_database
from queue_service.store.db import ENGINE_ROLE
from queue_service.store.enqueue_plan import keyless_params
from queue_service.store.migrate import apply_migrations
from queue_service.store.queries import Q

OURS, RAW = "qs_layers", "qs_layers_raw"
Step = Callable[[int], Awaitable[None] | None]


Row = tuple[str, float, float]  # variant, wall µs/job, CPU µs/job


async def measure(ours: str, raw: str, rounds: int, per_round: int) -> list[Row]:
    settings = load_settings()
    walls: defaultdict[str, float] = defaultdict(float)
    cpus: defaultdict[str, float] = defaultdict(float)
    base = psycopg.connect(raw, autocommit=True)
    sync = psycopg.connect(ours, autocommit=True, prepare_threshold=2)
    sync.execute(f"SET ROLE {ENGINE_ROLE}")
    aconn = await psycopg.AsyncConnection.connect(ours, autocommit=True, prepare_threshold=2)
    await aconn.execute(f"SET ROLE {ENGINE_ROLE}")
    no_lane = settings.model_copy(update={"queue_service_insert_lane": 0})
    async with open_runtime(settings, ours) as rt, open_runtime(no_lane, ours) as rt0:
        freeze_startup_heap()
        job = rt.manager.build(_request(0))

        def baseline_insert(i: int) -> None:
            payload = Jsonb({"i": i, "ts": time.time()})
            base.execute(baseline.INSERT_ONE, (baseline.QUEUE, 0, payload))

        def sync_statement(i: int) -> None:
            sync.execute(Q["job_insert_keyless"], keyless_params(job, uuid7()))

        async def async_statement(i: int) -> None:
            await aconn.execute(Q["job_insert_keyless"], keyless_params(job, uuid7()))

        async def pooled_statement(i: int) -> None:
            async with rt0.db.pool.connection() as c:
                await c.execute(Q["job_insert_keyless"], keyless_params(job, uuid7()))

        async def manager_pool(i: int) -> None:
            await rt0.manager.enqueue(_request(i))

        async def manager_lane(i: int) -> None:
            await rt.manager.enqueue(_request(i))

        variants: list[tuple[str, Step]] = [
            ("baseline loop (sync psycopg, its table)", baseline_insert),
            ("job_insert_keyless, sync psycopg", sync_statement),
            ("job_insert_keyless, async psycopg", async_statement),
            ("job_insert_keyless, psycopg pool", pooled_statement),
            ("JobManager.enqueue, lane off", manager_pool),
            ("JobManager.enqueue, insert lane", manager_lane),
        ]
        for r in range(rounds + 1):  # round 0 warms up (prepares statements, opens the lane)
            for name, step in variants:
                t0, c0 = time.perf_counter(), time.process_time()
                for i in range(per_round):
                    done = step(i)
                    if done is not None:
                        await done
                if r:
                    walls[name] += time.perf_counter() - t0
                    cpus[name] += time.process_time() - c0
    base.close()
    sync.close()
    await aconn.close()
    n = rounds * per_round
    return [(name, walls[name] / n * 1e6, cpus[name] / n * 1e6) for name, _ in variants]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--database-url", required=True, help="a server; two scratch databases are made there"
    )
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--per-round", type=int, default=400)
    args = ap.parse_args()
    ours = create_database(args.database_url, OURS)
    raw = create_database(args.database_url, RAW)
    try:
        apply_migrations(ours)
        baseline.setup(raw)
        with asyncio.Runner(loop_factory=loop_factory(load_settings())) as runner:
            rows = runner.run(measure(ours, raw, args.rounds, args.per_round))
    finally:
        drop_database(args.database_url, OURS)
        drop_database(args.database_url, RAW)
    base_wall = rows[0][1]
    print(f"{'variant':44s} {'wall µs/job':>12s} {'CPU µs/job':>11s} {'ratio':>6s}")
    for name, wall, cpu in rows:
        print(f"{name:44s} {wall:12.0f} {cpu:11.0f} {base_wall / wall:6.2f}")


if __name__ == "__main__":
    main()
