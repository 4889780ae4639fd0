"""Database outages under load: a restarted server, killed backends.

A real worker process works through a mix of jobs while its database goes away. Every
accepted job must still complete exactly once (one ledger row per test.sleep job), and the
same process must ride the outage out: reconnect with backoff, LISTEN again, no crash, no
busy loop, no restart.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, LiteralString
from uuid import UUID

import psycopg
import pytest

from queue_service.processors.registry import load_registry
from queue_service.runtime.manager import EnqueueRequest, JobManager
from queue_service.store import Database, Store
from queue_service.store.embedded import EmbeddedPostgres, start_embedded
from queue_service.store.enqueue_plan import Enqueued
from queue_service.store.errors import is_transient
from queue_service.store.migrate import apply_migrations
from tests.support.processes import ServiceProcess
from tests.support.processors import LEDGER_DDL, PROCESSORS
from tests.support.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

needs_embedded = pytest.mark.skipif(
    os.environ.get("QUEUE_SERVICE_TEST_EMBEDDED") != "1"
    and bool(os.environ.get("TEST_DATABASE_URL")),
    reason="TEST_DATABASE_URL is set; QUEUE_SERVICE_TEST_EMBEDDED=1 runs these anyway",
)

TENANT = "outage"
UNAVAILABLE = "database unavailable, retrying"
# How long the server stays down: the outage itself, not a wait for something.
OUTAGE_SECONDS = 2.0
# Once the server is back the backlog must be worked off within this. A pool that leaves
# its waiting callers to their 30 s getconn timeout before reconnecting misses it by far.
RECOVERY_SECONDS = 12.0
# Each component retrying on its own Backoff logs its first failure (then every 20th):
# the runners, the completer, the listener, the leader, one per outcome being recorded.
MAX_UNAVAILABLE_LINES_PER_OUTAGE = 40
MAX_POOL_ERRORS_PER_OUTAGE = 40
KILL_LOAD_JOBS = 450
# The service's own connections (pool, listener, leader) in the test's database only.
KILL_SERVICE_BACKENDS = """
SELECT application_name, pid, pg_terminate_backend(pid)
FROM pg_stat_activity
WHERE application_name LIKE 'queue-service%%'
  AND datname = current_database()
  AND pid <> pg_backend_pid()
"""
LISTENER_BACKENDS = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database()
  AND application_name = 'queue-service listener' AND query LIKE 'LISTEN%%'
"""

Row = tuple[Any, ...]
Probe = Callable[[], Awaitable[object]]


# --- a PostgreSQL cluster of the test's own, to stop and start ----------------------------------


class RestartableServer:
    """An embedded PostgreSQL on its own data directory; ``stop()`` stops it for real."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.handle: EmbeddedPostgres | None = None
        self.conninfo = ""

    async def start(self) -> None:
        assert self.handle is None
        # In a thread: tests keep enqueueing on the event loop meanwhile.
        self.handle = await asyncio.to_thread(start_embedded, self.data_dir)
        self.conninfo = self.handle.conninfo

    async def stop(self) -> None:
        handle, self.handle = self.handle, None
        assert handle is not None
        # This process holds the only handle (a ServiceProcess connects by DATABASE_URL and
        # never attaches), so releasing it runs `pg_ctl stop`, fast mode: sessions are
        # terminated, then the server shuts down.
        await asyncio.to_thread(handle.stop)
        assert not (self.data_dir / "postmaster.pid").exists(), "the server still runs"

    async def restart(self, while_down: Probe | None = None) -> tuple[float, float]:
        """Stop; await ``while_down``; stay down OUTAGE_SECONDS in all; start again on the
        same data directory (same socket, same conninfo).

        Returns (seconds clients could not connect, monotonic time it was back).
        """
        conninfo = self.conninfo
        began = time.monotonic()
        await self.stop()
        if while_down is not None:
            await while_down()
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - began)))
        await self.start()
        assert self.conninfo == conninfo, "the restarted server must keep its address"
        back = time.monotonic()
        return back - began, back


@pytest.fixture
async def server() -> AsyncIterator[RestartableServer]:
    """A fresh migrated cluster with the ledger table; stopped and deleted after."""
    # Not pytest's tmp_path: as root the library chmods every parent of the data directory.
    root = Path(tempfile.mkdtemp(prefix="qs-outage-"))
    srv = RestartableServer(root / "pgdata")
    try:
        await srv.start()
        await asyncio.to_thread(apply_migrations, srv.conninfo)
        async with await psycopg.AsyncConnection.connect(srv.conninfo, autocommit=True) as c:
            await c.execute(LEDGER_DDL)
        yield srv
    finally:
        if srv.handle is not None:
            await srv.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def services() -> Iterator[list[ServiceProcess]]:
    """ServiceProcesses a test started: killed at the end, whatever happened."""
    started: list[ServiceProcess] = []
    yield started
    for svc in started:
        svc.stop()


# --- helpers ----------------------------------------------------------------------------------


@asynccontextmanager
async def client(conninfo: str) -> AsyncIterator[JobManager]:
    """The test's own enqueue side, under an application_name the kill query spares."""
    db = Database(conninfo, min_size=1, max_size=4, application_name="qs-outage-test")
    store = Store(db)
    registry = load_registry(
        extra=PROCESSORS,
        use_entry_points=False,
    )
    await db.open()
    try:
        yield JobManager(store, registry)
    finally:
        await db.close()


def job(i: int, key: str | None = None) -> EnqueueRequest:
    """Every third job is a test.sleep(0.05), which writes the ledger; the rest test.echo."""
    if i % 3 == 0:
        return EnqueueRequest(
            type="test.sleep",
            data={"seconds": 0.05, "tag": str(i)},
            tenant_id=TENANT,
            idempotency_key=key,
        )
    return EnqueueRequest(
        type="test.echo", data={"value": i}, tenant_id=TENANT, idempotency_key=key
    )


def sleep_ids(accepted: Sequence[Enqueued], first: int = 0) -> set[UUID]:
    """The test.sleep jobs among ``accepted``, enqueued as job(first), job(first + 1)..."""
    return {e.job_id for i, e in enumerate(accepted, first) if i % 3 == 0}


async def fetch(
    conninfo: str, query: LiteralString, params: Sequence[Any] | None = None
) -> list[Row]:
    """One query on a connection of its own: nothing stale survives an outage here."""
    async with await psycopg.AsyncConnection.connect(
        conninfo, autocommit=True, application_name="qs-outage-probe", connect_timeout=5
    ) as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall()


async def completed_count(conninfo: str) -> int:
    rows = await fetch(
        conninfo,
        "SELECT count(*) FROM finished_jobs WHERE tenant_id = %s AND status = 'completed'",
        [TENANT],
    )
    return int(rows[0][0])


async def at_least_completed(conninfo: str, n: int) -> bool:
    return await completed_count(conninfo) >= n


async def wait_all_completed(conninfo: str, ids: set[UUID], timeout: float = 30.0) -> None:
    async def all_done() -> bool:
        rows = await fetch(
            conninfo,
            "SELECT count(*) FROM finished_jobs WHERE id = ANY(%s) AND status = 'completed'",
            [list(ids)],
        )
        return int(rows[0][0]) == len(ids)

    await eventually(all_done, timeout=timeout, interval=0.05, what=f"{len(ids)} completions")


async def assert_exactly_once(conninfo: str, accepted: set[UUID], sleeps: set[UUID]) -> None:
    """Every accepted job completed; nothing of the tenant left behind, failed or cancelled;
    exactly one ledger row per test.sleep job."""
    left = await fetch(conninfo, "SELECT id, status FROM jobs WHERE tenant_id = %s", [TENANT])
    assert left == [], f"jobs left behind: {left[:5]}"
    bad = await fetch(
        conninfo,
        "SELECT id, status, last_error FROM finished_jobs"
        " WHERE tenant_id = %s AND status <> 'completed'",
        [TENANT],
    )
    assert bad == [], f"jobs that did not complete: {bad[:5]}"
    done = await fetch(
        conninfo,
        "SELECT id FROM finished_jobs WHERE tenant_id = %s AND status = 'completed'",
        [TENANT],
    )
    assert accepted <= {r[0] for r in done}
    ledger: dict[UUID, int] = {
        r[0]: r[1]
        for r in await fetch(conninfo, "SELECT job_id, count(*) FROM test_ledger GROUP BY job_id")
    }
    assert sleeps <= set(ledger), f"{len(sleeps - set(ledger))} sleep jobs left no ledger row"
    repeated = {k: v for k, v in ledger.items() if v != 1}
    assert repeated == {}, f"effects recorded more than once: {repeated}"


def log_events(svc: ServiceProcess) -> list[dict[str, Any]]:
    """The service's JSON log lines, in order (anything else is skipped)."""
    events = []
    for line in svc.logs().splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def unavailable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == UNAVAILABLE]


def assert_no_busy_loop(
    events: list[dict[str, Any]], outages: int, *, noticed: bool = True
) -> None:
    """Retries back off, and each component logs its first failure (and every 20th) only.

    ``noticed=False`` when the outage may pass without any call failing (the
    pool can hold callers until the server is back)."""
    lines = unavailable(events)
    summary = [(e.get("doing"), e.get("failures")) for e in lines]
    assert len(lines) <= MAX_UNAVAILABLE_LINES_PER_OUTAGE * outages, summary
    assert lines or not noticed, "the outage was never noticed"
    # With doubling delays, an outage of a few seconds cannot reach a 20th failure.
    assert max((int(e.get("failures", 0)) for e in lines), default=0) < 20, summary
    pool_errors = [e for e in events if str(e.get("event", "")).startswith("error connecting")]
    assert len(pool_errors) <= MAX_POOL_ERRORS_PER_OUTAGE * outages, len(pool_errors)


async def stop_gracefully(svc: ServiceProcess) -> None:
    svc.signal(signal.SIGTERM)
    code = await asyncio.to_thread(svc.wait, 20)
    assert code == 0, svc.logs()[-3000:]


# --- the tests --------------------------------------------------------------------------------


@needs_embedded
@pytest.mark.parametrize("command", ["serve", "worker"])
async def test_a_database_restart_mid_load_loses_no_job_and_needs_no_worker_restart(
    server: RestartableServer, services: list[ServiceProcess], command: str
) -> None:
    conninfo = server.conninfo
    svc = ServiceProcess(conninfo, command)
    services.append(svc)
    async with client(conninfo) as manager:
        first = await manager.enqueue_many([job(i) for i in range(300)])
        # The load is flowing: some jobs done, most still to do when the server goes.
        await eventually(
            functools.partial(at_least_completed, conninfo, 20),
            timeout=20,
            what="the first completions",
        )
        done_before = await completed_count(conninfo)
        assert done_before < 300, "the load was over before the outage began"

        async def noticed() -> bool:
            return bool(unavailable(log_events(svc)))

        async def wait_noticed() -> None:
            await eventually(noticed, timeout=10, what="the worker to notice the outage")

        outage, back = await server.restart(while_down=wait_noticed)

        # More work after the restart. Keys make a retry safe when an answer was lost
        # (this pool may still hand out a connection that died with the old server).
        later = [job(i, key=f"after-{i}") for i in range(300, 360)]

        async def enqueue_later() -> list[Enqueued] | None:
            try:
                return await manager.enqueue_many(later)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                return None

        second = await eventually(enqueue_later, timeout=15, what="an enqueue after restart")
        assert second is not None

    ids = {e.job_id for e in first + second}
    assert len(ids) == 360
    await wait_all_completed(conninfo, ids, timeout=RECOVERY_SECONDS)
    drained = time.monotonic() - back
    await assert_exactly_once(conninfo, ids, sleep_ids(first) | sleep_ids(second, 300))
    assert await completed_count(conninfo) == 360

    # One process did all of it: alive, never restarted, registered under its pid.
    assert svc.proc.poll() is None, svc.logs()[-3000:]
    assert await fetch(conninfo, "SELECT pid FROM workers") == [(svc.pid,)]

    events = log_events(svc)
    assert_no_busy_loop(events, outages=1)
    # serve and worker are both leader candidates (decision 0022), alone here.
    outage_at = events.index(unavailable(events)[0])
    assert any(e.get("event") == "became leader" for e in events[outage_at:]), (
        "the leader did not take its duties up again after the restart"
    )
    print(
        f"\n[{command}] outage {outage:.2f} s, {done_before}/300 done before it; all 360 "
        f"done {drained:.2f} s after the restart; {len(unavailable(events))} retry lines"
    )
    await stop_gracefully(svc)


async def test_terminated_backends_under_load_lose_no_job_and_listen_again(
    database_url: str, services: list[ServiceProcess]
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        await c.execute(LEDGER_DDL)
    # A slow poll: then only a working LISTEN can start a new job within 0.5 s.
    svc = ServiceProcess(database_url, "serve", env={"QUEUE_SERVICE_POLL_INTERVAL_SECONDS": "2"})
    services.append(svc)

    async def listener_pids() -> set[int]:
        return {int(r[0]) for r in await fetch(database_url, LISTENER_BACKENDS)}

    await eventually(listener_pids, timeout=15, what="the service to LISTEN")

    killed: list[list[str]] = []
    killed_pids: set[int] = set()

    async def listening_again() -> set[int]:
        return await listener_pids() - killed_pids

    async with client(database_url) as manager:
        accepted = await manager.enqueue_many([job(i) for i in range(KILL_LOAD_JOBS)])
        began = time.monotonic()
        for threshold in (30, 120, 210):
            await eventually(
                functools.partial(at_least_completed, database_url, threshold),
                timeout=20,
                what=f"{threshold} completions",
            )
            # Each round must find the listener LISTENing again, and kill it with the rest.
            await eventually(listening_again, timeout=15, what="the listener to LISTEN")
            rows = await fetch(database_url, KILL_SERVICE_BACKENDS)
            killed.append(sorted(str(r[0]) for r in rows if r[2]))
            killed_pids.update(int(r[1]) for r in rows if r[2])
        assert await completed_count(database_url) < KILL_LOAD_JOBS, (
            "the load ended before the last kill"
        )
        for names in killed:
            assert {"queue-service", "queue-service listener"} <= set(names), killed

        ids = {e.job_id for e in accepted}
        await wait_all_completed(database_url, ids)
        drained = time.monotonic() - began
        await assert_exactly_once(database_url, ids, sleep_ids(accepted))
        assert svc.proc.poll() is None, svc.logs()[-3000:]

        # The listener is back, on a new backend...
        await eventually(listening_again, timeout=15, what="the listener to LISTEN again")
        # ...and wakes the worker: new jobs start long before the 2 s poll would.
        latencies = []
        for i in range(1000, 1003):
            new = await manager.enqueue(job(3 * i + 1))
            await wait_all_completed(database_url, {new.job_id}, timeout=10)
            rows = await fetch(
                database_url,
                "SELECT extract(epoch FROM started_at - created_at) FROM finished_jobs"
                " WHERE id = %s",
                [new.job_id],
            )
            latencies.append(float(rows[0][0]))
        assert max(latencies) < 0.5, latencies

    events = log_events(svc)
    assert_no_busy_loop(events, outages=len(killed))
    doing = {e.get("doing") for e in unavailable(events)}
    assert "listening for notifications" in doing, doing
    print(
        f"\nkilled {[len(k) for k in killed]} backends; "
        f"{KILL_LOAD_JOBS} jobs done in {drained:.2f} s; "
        f"start latency after: {[round(x, 4) for x in latencies]} s"
    )
    await stop_gracefully(svc)


@needs_embedded
async def test_every_enqueue_that_returned_completes_across_a_restart(
    server: RestartableServer, services: list[ServiceProcess]
) -> None:
    conninfo = server.conninfo
    svc = ServiceProcess(conninfo, "serve")
    services.append(svc)
    accepted: dict[UUID, str] = {}
    refused: list[str] = []
    restarted = asyncio.Event()

    async with client(conninfo) as manager:

        async def producer() -> None:
            i = after_restart = 0
            while after_restart < 100:
                request = job(i)
                i += 1
                try:
                    done = await manager.enqueue(request)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    refused.append(type(exc).__name__)  # the caller knows: not accepted
                else:
                    accepted[done.job_id] = request.type
                    after_restart += restarted.is_set()
                await asyncio.sleep(0.005)  # a steady trickle, ~150 enqueues a second

        async def enough_before() -> bool:
            # The restart hits a running service: one that cannot reach its
            # database while it starts exits at once, naming DATABASE_URL
            # (test_startup_errors), which is not what this test is about.
            return len(accepted) >= 100 and await at_least_completed(conninfo, 20)

        task = asyncio.create_task(producer())
        try:
            await eventually(enough_before, timeout=30, what="100 enqueues, 20 done")
            outage, back = await server.restart()
            restarted.set()
            await asyncio.wait_for(asyncio.shield(task), 30)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    ids = set(accepted)
    await wait_all_completed(conninfo, ids, timeout=RECOVERY_SECONDS)
    drained = time.monotonic() - back
    sleeps = {job_id for job_id, job_type in accepted.items() if job_type == "test.sleep"}
    await assert_exactly_once(conninfo, ids, sleeps)
    assert svc.proc.poll() is None, svc.logs()[-3000:]
    assert_no_busy_loop(log_events(svc), outages=1, noticed=False)
    print(
        f"\noutage {outage:.2f} s; {len(accepted)} enqueues returned, {len(refused)} raised "
        f"{sorted(set(refused))}; all done {drained:.2f} s after the restart"
    )
    await stop_gracefully(svc)
