"""Schedules across real `serve` processes: a leader killed with SIGKILL, and
the next tick fired by the process that takes over, each tick once."""

from __future__ import annotations

import signal
from datetime import datetime
from typing import Any

import psycopg
import pytest

from queue_service.runtime.duties.schedules import job_key
from queue_service.runtime.schedules import ScheduleManager, ScheduleRequest
from queue_service.runtime.service import Runtime
from tests.integration.conftest import Spawn, registered
from tests.integration.test_processes import became_leader
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


def sql(database_url: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


async def test_a_killed_leaders_next_tick_fires_on_the_process_that_takes_over(
    runtime: Runtime, spawn: Spawn, database_url: str
) -> None:
    # Yearly: the only ticks are the ones this test moves into the past.
    schedule = await ScheduleManager(runtime.manager).add(
        ScheduleRequest("t1", "yearly", "0 0 1 1 *", "test.echo", {"value": 1})
    )
    servers = {name: spawn("serve", QUEUE_SERVICE_WORKER_ID=name) for name in ("s-1", "s-2")}
    await registered(runtime, *servers)

    async def leaders() -> list[str]:
        return [name for name, proc in servers.items() if became_leader(proc)]

    (elected,) = await eventually(leaders, what="a leader")
    leader = servers[elected]
    (follower,) = [proc for name, proc in servers.items() if name != elected]

    def tick_now() -> datetime:
        rows = sql(
            database_url,
            "UPDATE schedules SET next_run_at = now() - interval '1 s' WHERE id = %s"
            " RETURNING next_run_at",
            (schedule.id,),
        )
        return rows[0][0]  # type: ignore[no-any-return]

    def fired() -> list[datetime]:
        rows = sql(
            database_url,
            "SELECT fire_at FROM schedule_runs WHERE schedule_id = %s AND status = 'fired'"
            " ORDER BY fire_at",
            (schedule.id,),
        )
        return [r[0] for r in rows]

    first = tick_now()

    async def first_fired() -> bool:
        return fired() == [first]

    await eventually(first_fired, what="the first tick to fire on the leader")
    assert "schedule fired" in leader.logs() and "schedule fired" not in follower.logs()

    leader.signal(signal.SIGKILL)
    second = tick_now()  # due while nobody leads

    async def second_fired() -> bool:
        return fired() == [first, second]

    await eventually(second_fired, timeout=15, what="the next tick to fire on the follower")
    assert became_leader(follower) and "schedule fired" in follower.logs()
    keys = sql(
        database_url,
        "SELECT idempotency_key FROM jobs WHERE created_by = 'schedule:yearly' UNION ALL"
        " SELECT idempotency_key FROM finished_jobs WHERE created_by = 'schedule:yearly'",
    )
    assert sorted(k for (k,) in keys) == sorted(job_key(schedule.id, t) for t in (first, second))
