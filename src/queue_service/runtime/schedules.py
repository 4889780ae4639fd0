"""Schedules' front door for the API and the CLI: a schedule is checked like
an enqueue (its job type and data through the registry), its cron and time
zone with cronsim and zoneinfo, and written with its next tick."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from queue_service.core.cron import CronError, CronSpec, Misfire
from queue_service.core.ids import uuid7
from queue_service.core.jobs import EnqueueRequest
from queue_service.errors import EnqueueError
from queue_service.runtime.manager import JobManager
from queue_service.store.schedules import NewSchedule, Schedule

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")


class InvalidScheduleError(EnqueueError):
    """A schedule was refused (bad name, cron, time zone, misfire); nothing was written."""


class ScheduleExistsError(EnqueueError):
    """The tenant already has a schedule of that name."""


class ScheduleNotFoundError(EnqueueError):
    """No schedule of that id or name (in the tenant asked about)."""


@dataclass(frozen=True, slots=True)
class ScheduleRequest:
    """A schedule as a caller states it (SPEC §6's body plus who asks)."""

    tenant_id: str
    name: str
    cron: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    active: bool = True
    misfire: str = Misfire.RUN_ONCE.value
    created_by: str | None = None


def explain(schedule: Schedule) -> str:
    """The human reading of a stored schedule's cron, e.g. 'At the start of every hour (UTC)'."""
    try:
        return CronSpec.parse(schedule.cron, schedule.timezone).explain()
    except CronError as exc:  # a zone gone from the system's tz database
        return str(exc)


class ScheduleManager:
    def __init__(self, jobs: JobManager) -> None:
        self.jobs = jobs
        self.store = jobs.store

    async def check(self, request: ScheduleRequest) -> NewSchedule:
        """Validate everything and compute the next tick (raises EnqueueError)."""
        if not NAME.fullmatch(request.name):
            raise InvalidScheduleError(
                f"schedule name {request.name!r}: 1-100 characters of A-Z a-z 0-9 _ . : -,"
                " starting with a letter or digit"
            )
        if request.misfire not in {m.value for m in Misfire}:
            raise InvalidScheduleError(
                f"misfire {request.misfire!r}: give run_once (one job for the ticks missed"
                " while no leader ran) or skip (none)"
            )
        try:
            spec = CronSpec.parse(request.cron, request.timezone)
        except CronError as exc:
            raise InvalidScheduleError(str(exc)) from None
        # The job each tick enqueues, checked now exactly as an enqueue is.
        self.jobs.build(
            EnqueueRequest(type=request.type, data=request.data, tenant_id=request.tenant_id)
        )
        next_run_at = spec.next_after(await self.store.db_now())
        if next_run_at is None:
            raise InvalidScheduleError(f"cron {request.cron!r} never fires again")
        return NewSchedule(
            tenant_id=request.tenant_id,
            name=request.name,
            cron=spec.cron,
            timezone=spec.timezone,
            type=request.type,
            data=request.data,
            active=request.active,
            misfire=request.misfire,
            next_run_at=next_run_at,
            created_by=request.created_by,
        )

    async def add(self, request: ScheduleRequest, *, replace: bool = False) -> Schedule:
        """Write a new schedule; with ``replace``, change the one of that name in place."""
        new = await self.check(request)
        if replace:
            changed = await self.store.replace_schedule(new)
            if changed is not None:
                return changed
        added = await self.store.add_schedule(new, uuid7())
        if added is None:
            raise ScheduleExistsError(
                f"tenant {request.tenant_id!r} already has a schedule {request.name!r}:"
                " remove it first (or `queue-service schedules add --replace`)"
            )
        return added

    async def find(self, tenant: str | None, id_or_name: str) -> Schedule:
        """One schedule by id or name; several tenants' of that name is an error."""
        try:
            schedule_id: UUID | None = UUID(id_or_name)
        except ValueError:
            schedule_id = None
        found = await self.store.find_schedules(tenant, schedule_id=schedule_id, name=id_or_name)
        if not found:
            where = f" of tenant {tenant!r}" if tenant else ""
            raise ScheduleNotFoundError(f"no schedule {id_or_name!r}{where}")
        if len(found) > 1:
            tenants = ", ".join(s.tenant_id for s in found)
            raise ScheduleNotFoundError(
                f"several tenants have a schedule {id_or_name!r} ({tenants}):"
                " name one with --tenant"
            )
        return found[0]

    async def remove(self, tenant: str | None, id_or_name: str) -> Schedule:
        schedule = await self.find(tenant, id_or_name)
        removed = await self.store.delete_schedule(schedule.id, schedule.tenant_id)
        if removed is None:
            raise ScheduleNotFoundError(f"no schedule {id_or_name!r}")
        return removed
