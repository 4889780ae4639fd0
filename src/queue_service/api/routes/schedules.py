"""/schedules: the caller's tenant's cron schedules (admin): list, add, remove."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from queue_service.api.cursors import decode_cursor, encode_cursor
from queue_service.api.problems import ERROR_RESPONSES, Problem
from queue_service.api.schemas import Strict
from queue_service.api.security import Admin, State
from queue_service.runtime.schedules import (
    NAME,
    ScheduleExistsError,
    ScheduleManager,
    ScheduleRequest,
    explain,
)
from queue_service.store.schedules import Schedule

router = APIRouter(tags=["schedules"], responses=ERROR_RESPONSES)
MisfireName = Literal["run_once", "skip"]


class ScheduleBody(Strict):
    name: str = Field(pattern=f"^{NAME.pattern}$", examples=["nightly-report"])
    cron: str = Field(
        min_length=1,
        max_length=200,
        description="5 fields: minute hour day-of-month month day-of-week",
        examples=["0 3 * * MON-FRI"],
    )
    timezone: str = Field(default="UTC", min_length=1, max_length=64, examples=["Europe/Paris"])
    type: str = Field(min_length=1, max_length=100, examples=["report.generate"])
    data: dict[str, Any] = Field(default_factory=dict)
    active: bool = True
    misfire: MisfireName = Field(
        default="run_once",
        description="Ticks missed while no leader ran: run_once enqueues one job for them, "
        "skip none; every miss is recorded either way",
    )


class ScheduleOut(BaseModel):
    id: UUID
    name: str
    cron: str
    timezone: str
    type: str
    data: dict[str, Any]
    active: bool
    misfire: MisfireName
    next_run_at: datetime | None
    last_fired_at: datetime | None
    explain: str = Field(examples=["At 03:00 on Monday through Friday (Europe/Paris)"])


class ScheduleList(BaseModel):
    items: list[ScheduleOut]
    next_cursor: str | None = None


def schedule_out(schedule: Schedule) -> ScheduleOut:
    return ScheduleOut(
        id=schedule.id,
        name=schedule.name,
        cron=schedule.cron,
        timezone=schedule.timezone,
        type=schedule.type,
        data=schedule.data,
        active=schedule.active,
        misfire="skip" if schedule.misfire == "skip" else "run_once",
        next_run_at=schedule.next_run_at,
        last_fired_at=schedule.last_fired_at,
        explain=explain(schedule),
    )


@router.get("/schedules", response_model=ScheduleList, summary="Cron schedules, oldest first")
async def list_schedules(
    caller: Admin,
    state: State,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ScheduleList:
    async with state.scope(caller) as scope:
        found = await scope.store.list_schedules(
            caller.tenant_id, limit + 1, decode_cursor(cursor) if cursor else None
        )
    page = found[:limit]
    return ScheduleList(
        items=[schedule_out(s) for s in page],
        next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if len(found) > limit else None,
    )


@router.post(
    "/schedules",
    response_model=ScheduleOut,
    status_code=201,
    summary="Add a cron schedule; its job type and data are checked like an enqueue",
)
async def add_schedule(body: ScheduleBody, caller: Admin, state: State) -> ScheduleOut:
    async with state.scope(caller) as scope:
        request = ScheduleRequest(
            tenant_id=caller.tenant_id,
            name=body.name,
            cron=body.cron,
            type=body.type,
            data=body.data,
            timezone=body.timezone,
            active=body.active,
            misfire=body.misfire,
            created_by=caller.subject,
        )
        try:
            added = await ScheduleManager(scope.manager).add(request)
        except ScheduleExistsError as exc:
            raise Problem(409, str(exc)) from None
    return schedule_out(added)


@router.delete(
    "/schedules/{schedule_id}",
    response_model=ScheduleOut,
    summary="Remove a schedule (the jobs it enqueued stay)",
)
async def delete_schedule(schedule_id: UUID, caller: Admin, state: State) -> ScheduleOut:
    async with state.scope(caller) as scope:
        removed = await scope.store.delete_schedule(schedule_id, caller.tenant_id)
    if removed is None:
        raise Problem(404, f"no schedule {schedule_id}")
    return schedule_out(removed)
