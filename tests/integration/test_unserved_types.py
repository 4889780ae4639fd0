"""Workers advertise the job types they serve; the leader warns while ready
jobs of a type have no live worker serving it."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import MutableMapping
from typing import Any

import psycopg
from structlog.testing import capture_logs

from queue_service.observability.metrics import REGISTRY
from queue_service.runtime.duties.coverage import UnservedTypesDuty
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime
from tests.integration.conftest import Spawn, WorkerFactory
from tests.support.greetings_plugin.cli import PLUGIN, cli
from tests.support.processes import ServiceProcess
from tests.support.waiting import eventually


def _unserved(queue: str, job_type: str) -> float | None:
    return REGISTRY.get_sample_value("queue_unserved_jobs", {"queue": queue, "type": job_type})


def _warnings(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == "jobs waiting for a type no live worker serves"]


async def test_the_leader_warns_while_no_live_worker_serves_a_waiting_type(
    runtime: Runtime,
) -> None:
    await runtime.manager.enqueue(EnqueueRequest(type="test.echo", data={}, tenant_id="acme"))
    duty = UnservedTypesDuty(runtime.store, leader_interval=0.0)

    with capture_logs() as logs:
        await duty.run()
    [warning] = _warnings(logs)
    assert warning["queue"] == "test" and warning["job_type"] == "test.echo"
    assert warning["waiting"] == 1 and warning["log_level"] == "warning"
    assert _unserved("test", "test.echo") == 1

    # A worker on the queue without the type (started without the plug-in)
    # does not serve it; the warning is not repeated every round.
    await runtime.store.upsert_worker("w-old", "h", 1, ["test"], ["test.fail"])
    with capture_logs() as logs:
        await duty.run()
    assert _warnings(logs) == []
    assert _unserved("test", "test.echo") == 1

    await runtime.store.upsert_worker("w-new", "h", 2, ["test"], ["test.echo", "test.fail"])
    with capture_logs() as logs:
        await duty.run()
    assert [e["event"] for e in logs] == ["job type served again"]
    assert _unserved("test", "test.echo") is None


async def test_a_worker_advertises_the_types_it_serves(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    worker = run_worker(("test",))

    async def advertised() -> list[str] | None:
        with psycopg.connect(runtime.conninfo) as conn:
            row = conn.execute(
                "SELECT types FROM workers WHERE id = %s", (worker.worker_id,)
            ).fetchone()
        return None if row is None else list(row[0])

    types = await eventually(advertised, what="the worker's row")
    assert types == runtime.registry.types_in_queue("test")


def test_a_service_without_the_plugin_names_the_jobs_it_leaves_waiting(
    database_url: str, spawn: Spawn
) -> None:
    enqueued = cli(database_url, "enqueue", "plugin.greet", "--tenant", "acme", "--data", ADA)
    assert enqueued.returncode == 0, enqueued.stderr  # the CLI has the plug-in (and migrated it)
    serve = spawn("serve")  # the test job types only: not the plug-in

    _wait_for(serve, "jobs waiting for a type no live worker serves")
    warning = next(e for e in _events(serve) if e["event"].startswith("jobs waiting"))
    assert (warning["queue"], warning["job_type"], warning["waiting"]) == (
        "communication",
        "plugin.greet",
        1,
    )

    spawn("worker", "--queues", "communication", QUEUE_SERVICE_PROCESSORS=PLUGIN)

    _wait_for(serve, "job type served again")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT text FROM plugin_greetings").fetchall() == [("hello Ada",)]


ADA = '{"name": "Ada"}'


def _events(proc: ServiceProcess) -> list[dict[str, Any]]:
    found = []
    for line in proc.logs().splitlines():
        with contextlib.suppress(ValueError):
            found.append(json.loads(line))
    return found


def _wait_for(proc: ServiceProcess, event: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e.get("event") == event for e in _events(proc)):
            return
        time.sleep(0.1)
    raise AssertionError(f"no {event!r} within {timeout} s:\n{proc.logs()}")
