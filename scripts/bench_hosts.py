"""Drain with 1, 2, 3 worker hosts: does adding a host add throughput?

Hosts are network namespaces on this machine (tests/support/netns.py,
decision 0021): a database host running its own PostgreSQL 15 (Debian's
binaries, fsync on), and up to three worker hosts each running one real
`queue-service worker --queues bench` process that reaches the database only
at the database host's address, over a veth cable and a bridge.

Per round and host count: a fresh database from a migrated template; the
`bench` queue paused; N `bench.noop` jobs enqueued (untimed, through the Unix
socket); the worker processes started and waited for ("worker started" in
each log); the queue resumed (which wakes the workers); and the rate read from
the database's clock, as `queue-service bench --workload drain` reads it:
jobs / (last completion - first pick-up). The host counts alternate between
rounds (1 2 3, then 3 2 1, ...) so the machine's drift hits them alike.

Each drain also reports the CPU seconds per 1,000 jobs spent by the worker
processes and by the database host's processes (postmaster and backends, from
/proc; backends that end mid-drain are missed, so that one is a lower
bound): on this 2-core machine every host shares the same cores, and these
say where they went. `--db-host` adds a drain by one worker on the database
host itself (no cable, no bridge: what the network costs).

Output: one JSON line per drain, then a summary line with each shape's
median rate and its ratio to one host's. Needs root (ip netns) and
postgresql-15. About two minutes per round with the defaults:

    .venv/bin/python scripts/bench_hosts.py --jobs 20000 --rounds 3 --db-host

This is a script rather than a `queue-service bench` workload because it
needs root and builds namespaces with the test support code; the bench CLI
runs anywhere against any server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.netns import (  # noqa: E402
    Host,
    HostProcess,
    NamespacedPostgres,
    Network,
    missing_requirement,
    namespace_pids,
    queue_service,
    service_env,
)

from queue_service.runtime.manager import EnqueueRequest  # noqa: E402
from queue_service.runtime.service import open_runtime  # noqa: E402
from queue_service.settings import Settings  # noqa: E402
from queue_service.store.databases import create_database, drop_database  # noqa: E402
from queue_service.store.migrate import apply_migrations  # noqa: E402

JOB_TYPE = "bench.noop"
QUEUE = "bench"
TENANT = "bench"


async def seed(url: str, jobs: int) -> None:
    """Pause the queue for every tenant, then enqueue the jobs."""
    settings = Settings(database_url=url, queue_service_insert_lane=0)
    async with open_runtime(settings, url) as rt:
        await rt.store.pause_queue(QUEUE, "*", "bench")
        for start in range(0, jobs, 1000):
            await rt.manager.enqueue_many(
                [
                    EnqueueRequest(type=JOB_TYPE, data={"i": i}, tenant_id=TENANT)
                    for i in range(start, min(jobs, start + 1000))
                ]
            )


async def release_and_wait(url: str, jobs: int, limit_s: float) -> dict[str, Any]:
    """Resume the queue, wait for every job, read the window on the database clock."""
    settings = Settings(database_url=url, queue_service_insert_lane=0)
    async with open_runtime(settings, url) as rt:
        await rt.store.resume_queue(QUEUE, "*")
        deadline = time.monotonic() + limit_s
        while True:
            first, last, count = await rt.store.bench_window(JOB_TYPE)
            if count >= jobs:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {count} of {jobs} jobs finished in {limit_s} s")
            await asyncio.sleep(0.5)  # the rate is read from the database's clock
    if first is None or last is None:
        raise RuntimeError("no job completed")
    elapsed = (last - first).total_seconds()
    return {"jobs": count, "elapsed_s": round(elapsed, 3), "rate": round(count / elapsed, 1)}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (/proc/PID/stat)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone: a backend that ended
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def wait_started(procs: list[HostProcess], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        while "worker started" not in proc.logs():
            if proc.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{proc.host.label} did not start:\n{proc.logs()}")
            time.sleep(0.1)


def drain(
    pg: NamespacedPostgres, template: str, hosts: list[Host], jobs: int, data: Path
) -> dict[str, Any]:
    dbname = f"qs_bh_{secrets.token_hex(4)}"
    create_database(pg.admin_url, dbname, template=template)
    procs: list[HostProcess] = []
    try:
        asyncio.run(seed(pg.local_url(dbname), jobs))
        for host in hosts:
            env = service_env(
                pg.url(dbname),
                data / host.label,
                QUEUE_SERVICE_WORKER_ID=host.label,
                QUEUE_SERVICE_PROCESSORS="",
                QUEUE_SERVICE_POLL_INTERVAL_SECONDS="1",
            )
            procs.append(host.start("worker", queue_service("worker", "--queues", QUEUE), env))
        wait_started(procs)
        worker_pids = [p.pid for p in procs]
        # The database host's processes, not a worker running beside them.
        db_pids = sorted(set(namespace_pids(pg.host.namespace)) - set(worker_pids))
        before = cpu_seconds(worker_pids), cpu_seconds(db_pids)
        result = asyncio.run(release_and_wait(pg.local_url(dbname), jobs, limit_s=600))
        # A backend is a process per connection: those opened during the drain
        # count in full, those that ended during it not at all (a lower bound).
        db_pids = sorted(set(db_pids) | set(namespace_pids(pg.host.namespace)) - set(worker_pids))
        workers_cpu = cpu_seconds(worker_pids) - before[0]
        db_cpu = cpu_seconds(db_pids) - before[1]
        per_k = 1000 / result["jobs"]
        return (
            {"hosts": [h.label for h in hosts]}
            | result
            | {
                "worker_cpu_s_per_1000": round(workers_cpu * per_k, 3),
                "db_cpu_s_per_1000": round(db_cpu * per_k, 3),
            }
        )
    finally:
        for proc in procs:
            proc.stop()
            proc.log_path.unlink(missing_ok=True)
        drop_database(pg.admin_url, dbname)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-hosts", type=int, default=3, choices=range(1, 9))
    parser.add_argument(
        "--db-host",
        action="store_true",
        help="also drain with one worker on the database host (no cable: the network's cost)",
    )
    args = parser.parse_args()
    missing = missing_requirement()
    if missing:
        sys.exit(f"bench_hosts: {missing}")

    rates: dict[str, list[float]] = {}
    data = Path(tempfile.mkdtemp(prefix="qs-bh-data-"))
    try:
        with Network() as net:
            pg = NamespacedPostgres(net.add_host("db"), fsync=True)
            try:
                workers = [net.add_host(f"w{i + 1}") for i in range(args.max_hosts)]
                template = f"qs_bh_tpl_{secrets.token_hex(4)}"
                apply_migrations(create_database(pg.admin_url, template))
                shapes = {str(k): workers[:k] for k in range(1, args.max_hosts + 1)}
                if args.db_host:
                    shapes["db-host"] = [pg.host]
                order = list(shapes)
                for n in range(args.rounds):
                    for shape in order if n % 2 == 0 else order[::-1]:
                        result = drain(pg, template, shapes[shape], args.jobs, data)
                        print(orjson.dumps(result | {"round": n + 1}).decode(), flush=True)
                        rates.setdefault(shape, []).append(result["rate"])
                drop_database(pg.admin_url, template)
            finally:
                pg.close()
    finally:
        shutil.rmtree(data, ignore_errors=True)
    one = statistics.median(rates["1"])
    summary = {
        shape: {
            "median_rate": statistics.median(r),
            "ratio_to_1": round(statistics.median(r) / one, 2),
        }
        for shape, r in rates.items()
    }
    print(orjson.dumps({"summary": summary, "jobs": args.jobs}).decode())


if __name__ == "__main__":
    main()
