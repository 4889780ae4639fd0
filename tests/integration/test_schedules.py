"""Cron schedules fired by the leader: each tick once with two leader
candidates, a racing pass that does nothing, misfire policies on a fixed
clock, and the built-in cleanup and maintenance schedules."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from queue_service.core.catalog import SYSTEM_TENANT
from queue_service.errors import EnqueueError, InvalidPayloadError
from queue_service.runtime.duties import leader_duties
from queue_service.runtime.duties.schedules import ScheduleDuty, job_key
from queue_service.runtime.leader import Leader
from queue_service.runtime.schedules import (
    InvalidScheduleError,
    ScheduleExistsError,
    ScheduleManager,
    ScheduleRequest,
)
from queue_service.runtime.service import Runtime
from queue_service.store.schedules import Schedule
from queue_service.store.session import LeaderSession

T0 = datetime(2025, 6, 1, 0, 0, tzinfo=UTC)


def sql(database_url: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


async def add(runtime: Runtime, name: str = "echo", **fields: Any) -> Schedule:
    request = ScheduleRequest(
        **{
            "tenant_id": "t1",
            "name": name,
            "cron": "* * * * *",
            "type": "test.echo",
            "data": {"value": name},
            **fields,
        }
    )
    return await ScheduleManager(runtime.manager).add(request)


def due_now(database_url: str, schedule_id: UUID) -> datetime:
    """Move the schedule's next tick a second into the past (no waiting for it)."""
    rows = sql(
        database_url,
        "UPDATE schedules SET next_run_at = now() - interval '1 s'"
        " WHERE id = %s RETURNING next_run_at",
        (schedule_id,),
    )
    return rows[0][0]  # type: ignore[no-any-return]


def runs(database_url: str, schedule_id: UUID) -> list[tuple[Any, ...]]:
    return sql(
        database_url,
        "SELECT fire_at, status, job_id FROM schedule_runs WHERE schedule_id = %s ORDER BY fire_at",
        (schedule_id,),
    )


def jobs_of(database_url: str, schedule: Schedule) -> list[tuple[Any, ...]]:
    return sql(
        database_url,
        "SELECT id, idempotency_key, data FROM jobs WHERE created_by = %s ORDER BY id",
        (f"schedule:{schedule.name}",),
    )


async def test_a_schedule_fires_each_tick_exactly_once_with_two_leader_candidates(
    runtime: Runtime, database_url: str
) -> None:
    # Yearly: the only ticks are the ones this test moves into the past.
    schedule = await add(runtime, cron="0 0 1 1 *")
    assert schedule.next_run_at is not None and schedule.next_run_at > datetime.now(UTC)
    leaders = [
        Leader(LeaderSession(runtime.conninfo), leader_duties(runtime.manager), interval=0.05)
        for _ in range(2)
    ]
    fired: list[datetime] = []
    try:
        for _ in range(3):
            fired.append(due_now(database_url, schedule.id))
            for _ in range(3):
                await asyncio.gather(*(leader.tick() for leader in leaders))
        assert sum(leader.is_leader for leader in leaders) == 1
    finally:
        for leader in leaders:
            await leader.session.release()

    assert [(at, status) for at, status, _ in runs(database_url, schedule.id)] == [
        (at, "fired") for at in fired
    ]
    jobs = jobs_of(database_url, schedule)
    assert [key for _, key, _ in jobs] == [job_key(schedule.id, at) for at in fired]
    assert {job for _, _, job in runs(database_url, schedule.id)} == {job for job, _, _ in jobs}
    (row,) = sql(
        database_url,
        "SELECT next_run_at, last_fired_at FROM schedules WHERE id = %s",
        (schedule.id,),
    )
    assert row == (schedule.next_run_at, fired[-1])


async def test_passes_racing_on_two_connections_fire_a_tick_once(
    runtime: Runtime, database_url: str
) -> None:
    schedules = [await add(runtime, f"s{i}") for i in range(20)]
    sql(database_url, "UPDATE schedules SET next_run_at = %s WHERE tenant_id = 't1'", (T0,))
    duties = [ScheduleDuty(runtime.manager), ScheduleDuty(runtime.manager)]
    now = T0 + timedelta(seconds=5)
    await asyncio.gather(*(d.fire_due(now) for d in duties))
    # A leader that read the schedules before the other's commit (a frozen
    # one, say) comes with the same tick: the run's unique key turns it away.
    sql(database_url, "UPDATE schedules SET next_run_at = %s WHERE tenant_id = 't1'", (T0,))
    assert await duties[1].fire_due(now) == 20
    for schedule in schedules:
        assert [r[:2] for r in runs(database_url, schedule.id)] == [(T0, "fired")]
        assert len(jobs_of(database_url, schedule)) == 1


async def test_run_once_enqueues_one_job_for_the_missed_ticks_and_records_each_miss(
    runtime: Runtime, database_url: str
) -> None:
    schedule = await add(runtime, cron="0 * * * *", misfire="run_once")
    sql(database_url, "UPDATE schedules SET next_run_at = %s WHERE id = %s", (T0, schedule.id))
    await ScheduleDuty(runtime.manager).fire_due(T0 + timedelta(hours=5, minutes=30))

    recorded = runs(database_url, schedule.id)
    assert [(at, status) for at, status, _ in recorded] == [
        (T0 + timedelta(hours=h), "missed") for h in range(6)
    ]
    ((job_id, key, _),) = jobs_of(database_url, schedule)
    assert key == job_key(schedule.id, T0 + timedelta(hours=5))
    assert {job for _, _, job in recorded} == {job_id}
    (row,) = sql(database_url, "SELECT next_run_at FROM schedules WHERE id = %s", (schedule.id,))
    assert row == (T0 + timedelta(hours=6),)


async def test_skip_enqueues_nothing_for_missed_ticks_and_records_each_miss(
    runtime: Runtime, database_url: str
) -> None:
    schedule = await add(runtime, cron="0 * * * *", misfire="skip")
    sql(database_url, "UPDATE schedules SET next_run_at = %s WHERE id = %s", (T0, schedule.id))
    duty = ScheduleDuty(runtime.manager)
    await duty.fire_due(T0 + timedelta(hours=5, minutes=30))

    assert [(at, status, job) for at, status, job in runs(database_url, schedule.id)] == [
        (T0 + timedelta(hours=h), "skipped", None) for h in range(6)
    ]
    assert jobs_of(database_url, schedule) == []
    # ...and it goes on from the next tick as usual.
    await duty.fire_due(T0 + timedelta(hours=6, seconds=3))
    assert runs(database_url, schedule.id)[-1][:2] == (T0 + timedelta(hours=6), "fired")
    assert len(jobs_of(database_url, schedule)) == 1


async def test_a_tick_whose_job_is_refused_is_recorded_skipped_with_the_reason(
    runtime: Runtime, database_url: str
) -> None:
    schedule = await add(runtime)
    sql(
        database_url,
        'UPDATE schedules SET next_run_at = %s, data = \'{"value": {"no": 1}}\','
        " type = 'test.gone' WHERE id = %s",
        (T0, schedule.id),
    )
    await ScheduleDuty(runtime.manager).fire_due(T0 + timedelta(seconds=1))
    (row,) = sql(
        database_url,
        "SELECT status, job_id, note FROM schedule_runs WHERE schedule_id = %s",
        (schedule.id,),
    )
    assert row[:2] == ("skipped", None) and "unknown job type 'test.gone'" in row[2]
    (nxt,) = sql(database_url, "SELECT next_run_at FROM schedules WHERE id = %s", (schedule.id,))
    assert nxt == (T0 + timedelta(minutes=1),)


async def test_a_schedule_is_checked_like_an_enqueue_and_nothing_is_written_when_refused(
    runtime: Runtime, database_url: str
) -> None:
    with pytest.raises(InvalidPayloadError, match=r"data\.seconds"):
        await add(runtime, type="test.sleep", data={"seconds": "soon"})
    with pytest.raises(EnqueueError, match="unknown job type"):
        await add(runtime, type="test.nope")
    with pytest.raises(InvalidScheduleError, match="Bad hour"):
        await add(runtime, cron="0 24 * * *")
    with pytest.raises(InvalidScheduleError, match="unknown time zone"):
        await add(runtime, timezone="Mars/Olympus")
    with pytest.raises(InvalidScheduleError, match="misfire"):
        await add(runtime, misfire="later")
    assert sql(database_url, "SELECT count(*) FROM schedules WHERE tenant_id = 't1'") == [(0,)]
    await add(runtime)
    with pytest.raises(ScheduleExistsError):
        await add(runtime)


async def test_the_built_in_cleanup_and_maintenance_schedules_exist_and_fire(
    runtime: Runtime, database_url: str
) -> None:
    built_in = sql(
        database_url,
        "SELECT name, cron, timezone, type, misfire, active, created_by, next_run_at"
        " FROM schedules WHERE tenant_id = %s ORDER BY name",
        (SYSTEM_TENANT,),
    )
    assert [r[:7] for r in built_in] == [
        ("cleanup", "0 * * * *", "UTC", "cleanup.run", "run_once", True, "system"),
        ("maintenance", "0 * * * *", "UTC", "maintenance.run", "run_once", True, "system"),
    ]
    assert all(r[7].minute == 0 and r[7].second == 0 for r in built_in)
    sql(database_url, "UPDATE schedules SET next_run_at = date_trunc('hour', now())")
    leader = Leader(LeaderSession(runtime.conninfo), leader_duties(runtime.manager))
    try:
        await leader.tick()
        await leader.tick()
    finally:
        await leader.session.release()
    jobs = sql(
        database_url,
        "SELECT type, tenant_id, created_by FROM jobs WHERE queue = 'background' ORDER BY type",
    )
    assert jobs == [
        ("cleanup.run", SYSTEM_TENANT, "schedule:cleanup"),
        ("maintenance.run", SYSTEM_TENANT, "schedule:maintenance"),
    ]
