"""Bursts against a real `queue-service api` process, for choosing
QUEUE_SERVICE_API_POOL_TIMEOUT_SECONDS (docs/decisions/0029-api-pool-wait.md).

For each wait (--timeouts) the API is started as its own process on a
scratch database (migrated by the API at start-up), and each scenario sends
--requests `POST /jobs` with at most --in-flight at once from this process:

    one-key   every request carries the same idempotency key (one job, the
              rest replays), as tests/api/test_concurrency_api.py does
    many-key  every request carries its own key (--requests jobs)

It prints, per wait and scenario, the statuses, the 503s, latency p50 / p99 /
max and the jobs written (one-key: must be 1; many-key: the 201s). With
--load N, N busy-looping processes run meanwhile, for a loaded CI machine.

    .venv/bin/python scripts/pool_wait_bench.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import secrets
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from queue_service.api.app import create_app
from queue_service.api.auth.tokens import mint_token
from queue_service.api.server import serve_http
from queue_service.api.state import build_api_state
from queue_service.observability.logging import configure_logging
from queue_service.runtime.service import open_runtime
from queue_service.settings import Settings
from queue_service.store.databases import create_database, drop_database
from queue_service.store.migrate import apply_migrations

SCRATCH = "qs_pool_wait_bench"
SECRET = secrets.token_urlsafe(48)  # this run's JWT key, given to the API it starts
TENANT = "bench"
SCENARIOS = ("one-key", "many-key")


@dataclass(frozen=True)
class Result:
    timeout: float
    scenario: str
    run: int
    statuses: Counter[int]
    latencies: list[float]  # seconds, every request
    elapsed: float
    jobs: int

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def api_process(conninfo: str, timeout: float, pool_size: int) -> Iterator[str]:
    """`queue-service api` with this pool wait; yields its base URL once started."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": conninfo,
        "JWT_SECRET": SECRET,
        "QUEUE_SERVICE_ENV": "production",
        "QUEUE_SERVICE_PORT": str(port),
        "QUEUE_SERVICE_POOL_SIZE": str(pool_size),
        "QUEUE_SERVICE_API_POOL_TIMEOUT_SECONDS": str(timeout),
        "QUEUE_SERVICE_LOG_LEVEL": "error",
        # Inbound limits far above any burst here: they are not what is measured.
        "QUEUE_SERVICE_RATE_LIMIT_ENQUEUE_PER_MINUTE": "10000000",
        "QUEUE_SERVICE_RATE_LIMIT_READ_PER_MINUTE": "10000000",
    }
    exe = Path(sys.executable).with_name("queue-service")
    # Our own entry point beside this interpreter, no shell.
    proc = subprocess.Popen([str(exe), "api"], env=env, stdout=subprocess.DEVNULL)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"queue-service api exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health/startup", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("queue-service api did not start within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def connect(conninfo: str) -> psycopg.Connection[tuple[int]]:
    """A connection, waiting out a server that is at max_connections (shared machines)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            conn: psycopg.Connection[tuple[int]] = psycopg.connect(conninfo, autocommit=True)
            return conn
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@contextlib.asynccontextmanager
async def api_in_process(conninfo: str, pool_wait: float, pool_size: int) -> AsyncIterator[str]:
    """The API served by uvicorn on this process's event loop, which the
    client shares: as tests/api's live_api fixture (the 1,000-request test)."""
    settings = Settings(
        database_url=conninfo,
        jwt_secret=SECRET,
        queue_service_pool_size=pool_size,
        queue_service_api_pool_timeout_seconds=pool_wait,
        queue_service_rate_limit_enqueue_per_minute=10_000_000,
        queue_service_rate_limit_read_per_minute=10_000_000,
    )
    port = free_port()
    async with open_runtime(settings, conninfo) as runtime:
        state = build_api_state(settings, runtime)
        await state.open()
        state.started = True
        stop, started = asyncio.Event(), asyncio.Event()
        server = asyncio.create_task(
            serve_http(
                create_app(state),
                "127.0.0.1",
                port,
                stop,
                state.settings.queue_service_http_keep_alive_seconds,
                started=started,
            )
        )
        try:
            await asyncio.wait_for(started.wait(), 60)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop.set()
            await server
            await state.close()


@contextlib.asynccontextmanager
async def api_server(
    conninfo: str, pool_wait: float, pool_size: int, in_process: bool
) -> AsyncIterator[str]:
    if in_process:
        async with api_in_process(conninfo, pool_wait, pool_size) as base:
            yield base
    else:
        with api_process(conninfo, pool_wait, pool_size) as base:
            yield base


def job_count(conninfo: str) -> int:
    with connect(conninfo) as conn:
        total = 0
        for table in ("jobs", "finished_jobs", "job_archive"):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            total += row[0] if row else 0
        return total


def clear_jobs(conninfo: str) -> None:
    with connect(conninfo) as conn:
        conn.execute("TRUNCATE jobs, finished_jobs, job_archive, queue_idempotency_keys CASCADE")


async def burst(
    base: str, scenario: str, run: int, requests: int, in_flight: int
) -> tuple[Counter[int], list[float], float]:
    token = mint_token(SECRET, subject="bench", tenant_id=TENANT, roles=["user"])
    headers = {"Authorization": f"Bearer {token}"}
    # As tests/api/test_concurrency_api.py: idle connections dropped before
    # the server's keep-alive closes them, and the queue kept in a semaphore.
    limits = httpx.Limits(
        max_connections=in_flight, max_keepalive_connections=in_flight, keepalive_expiry=1.0
    )
    slots = asyncio.Semaphore(in_flight)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=httpx.Timeout(60, pool=120)
    ) as client:

        async def post(i: int) -> None:
            # One key: the same body every time (a different one would be a 409).
            one = scenario == "one-key"
            key = f"run-{run}-one" if one else f"run-{run}-{i}"
            body = {"type": "bench.noop", "data": {"i": 0 if one else i}, "idempotency_key": key}
            async with slots:
                t0 = time.monotonic()
                try:
                    response = await client.post("/jobs", json=body, headers=headers)
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0  # no answer at all (counted apart)
                latencies.append(time.monotonic() - t0)
                statuses[status] += 1

        started = time.monotonic()
        await asyncio.gather(*(post(i) for i in range(requests)))
    return statuses, latencies, time.monotonic() - started


def spin() -> None:
    while True:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--database-url", required=True, help="a server; a scratch database is made")
    ap.add_argument("--timeouts", default="1,5,15", help="pool waits to compare, in seconds")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--in-flight", type=int, default=100)
    ap.add_argument("--pool-size", type=int, default=10)
    ap.add_argument("--runs", type=int, default=2, help="runs of each scenario per wait")
    ap.add_argument("--load", type=int, default=0, help="busy-looping processes meanwhile")
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="serve the API on this process's event loop (as the tests do), not as its own process",
    )
    args = ap.parse_args()
    timeouts = [float(t) for t in args.timeouts.split(",")]
    configure_logging("error")
    conninfo = create_database(args.database_url, SCRATCH)
    hogs = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.load)]
    try:
        apply_migrations(conninfo)
        for hog in hogs:
            hog.start()
        results = asyncio.run(measure(args, conninfo, timeouts))
    finally:
        for hog in hogs:
            hog.terminate()
        drop_database(args.database_url, SCRATCH)
    print()
    print(
        f"requests={args.requests} in_flight={args.in_flight} pool={args.pool_size}"
        f" load={args.load} runs={args.runs} in_process={args.in_process}; load average at the end"
        f" {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs"
    )
    print(f"{'wait':>5s} {'scenario':9s} {'503s':>12s} {'p50 s':>6s} {'p99 s':>6s} {'max s':>6s}")
    for timeout in timeouts:
        for scenario in SCENARIOS:
            mine = [r for r in results if r.timeout == timeout and r.scenario == scenario]
            refused = "+".join(str(r.statuses[503]) for r in mine)
            p50 = max(r.percentile(50) for r in mine)
            p99 = max(r.percentile(99) for r in mine)
            worst = max(max(r.latencies) for r in mine)
            print(f"{timeout:5g} {scenario:9s} {refused:>12s} {p50:6.2f} {p99:6.2f} {worst:6.2f}")


async def measure(args: argparse.Namespace, conninfo: str, timeouts: list[float]) -> list[Result]:
    results = []
    run = 0
    for timeout in timeouts:
        async with api_server(conninfo, timeout, args.pool_size, args.in_process) as base:
            await burst(base, "many-key", -1, 200, 20)  # warm-up, not counted
            for _ in range(args.runs):
                for scenario in SCENARIOS:
                    run += 1
                    clear_jobs(conninfo)
                    statuses, latencies, elapsed = await burst(
                        base, scenario, run, args.requests, args.in_flight
                    )
                    result = Result(
                        timeout, scenario, run, statuses, latencies, elapsed, job_count(conninfo)
                    )
                    results.append(result)
                    report(result)
                    print(f"  load average {os.getloadavg()[0]:.1f}", flush=True)
    return results


def report(r: Result) -> None:
    expected = 1 if r.scenario == "one-key" else r.statuses[201]
    ok = "ok" if r.jobs == expected else f"WRONG (expected {expected})"
    print(
        f"wait={r.timeout:g}s {r.scenario:8s} run {r.run}: {dict(sorted(r.statuses.items()))}"
        f" in {r.elapsed:.1f} s; p50 {r.percentile(50):.2f} s, p99 {r.percentile(99):.2f} s,"
        f" max {max(r.latencies):.2f} s; jobs {r.jobs} {ok}",
        flush=True,
    )


if __name__ == "__main__":
    main()
