"""Engine fixtures: a runtime on a fresh database with the test job types,
and an in-process worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import psycopg
import pytest

from queue_service.core.jobs import JobStatus
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime, open_runtime
from queue_service.runtime.worker import Worker
from queue_service.settings import Settings
from tests.support.processes import ServiceProcess
from tests.support.processors import LEDGER_DDL, PROCESSORS
from tests.support.waiting import eventually
from tests.support.workers import new_worker


def make_settings(database_url: str, **overrides: Any) -> Settings:
    return Settings(
        database_url=database_url,
        queue_service_poll_interval_seconds=0.2,
        queue_service_shutdown_grace_seconds=2,
        **overrides,
    )


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
    async with open_runtime(
        make_settings(database_url), database_url, extra_processors=PROCESSORS
    ) as rt:
        yield rt


WorkerFactory = Callable[..., Any]


@pytest.fixture
async def run_worker(runtime: Runtime) -> AsyncIterator[WorkerFactory]:
    """Start in-process workers; each is stopped (drained) at the end of the test."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    @asynccontextmanager
    async def _noop() -> AsyncIterator[None]:
        yield

    def start(queues: tuple[str, ...] = ("test",), **kwargs: Any) -> Worker:
        worker = new_worker(runtime, queues, **kwargs)
        stop = asyncio.Event()
        running.append((stop, asyncio.create_task(worker.run(stop))))
        return worker

    yield start
    for stop, _ in running:
        stop.set()
    await asyncio.gather(*(t for _, t in running))


Spawn = Callable[..., ServiceProcess]


@pytest.fixture
def spawn(database_url: str) -> Iterator[Spawn]:
    """Start `queue-service <args>` children; any still running are killed after
    the test, and their logs are printed (pytest shows them on failure)."""
    started: list[tuple[str, ServiceProcess]] = []

    def start(*args: str, **env: str) -> ServiceProcess:
        proc = ServiceProcess(database_url, *args, env=env)
        started.append((" ".join([*args, env.get("QUEUE_SERVICE_WORKER_ID", "")]), proc))
        return proc

    yield start
    for label, proc in started:
        proc.stop()  # SIGKILL works on a SIGSTOPped process too
        print(f"----- {label} (pid {proc.pid}, exit {proc.proc.returncode}) -----")
        print(proc.logs())
        proc.log_path.unlink(missing_ok=True)


async def registered(runtime: Runtime, *worker_ids: str) -> None:
    """Wait until these worker processes are up (in the worker registry)."""

    async def probe() -> bool:
        live = {w.id for w in await runtime.store.list_workers()}
        return set(worker_ids) <= live

    await eventually(probe, timeout=30, what=f"workers {worker_ids} to register")


async def a_long_job_taken(runtime: Runtime, what: str) -> UUID:
    """Enqueue a two-minute job and wait until a worker holds it (a job on a
    process the test can then kill or stop)."""
    stalled = await runtime.manager.enqueue(
        EnqueueRequest(
            type="test.sleep", data={"seconds": 120, "then_seconds": 0.1}, tenant_id="t1"
        )
    )

    async def active() -> bool:
        return (await runtime.manager.get(stalled.job_id)).status is JobStatus.ACTIVE

    await eventually(active, what=what)
    return stalled.job_id
