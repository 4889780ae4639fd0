"""Statements of cron schedules: the schedules themselves, the leader's
claim of due ones, and the record of each tick (fired, missed, skipped)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString
from uuid import UUID

from psycopg.rows import class_row

from queue_service.store.db import Conn, Database, json_text
from queue_service.store.queries import Q


@dataclass(frozen=True, slots=True)
class Schedule:
    id: UUID
    tenant_id: str
    name: str
    cron: str
    timezone: str
    type: str
    data: dict[str, Any]
    active: bool
    misfire: str
    next_run_at: datetime | None
    last_fired_at: datetime | None
    created_at: datetime
    created_by: str | None


@dataclass(frozen=True, slots=True)
class DueSchedule(Schedule):
    now: datetime  # the database clock of the claim


@dataclass(frozen=True, slots=True)
class ScheduleRun:
    fire_at: datetime
    status: str
    job_id: UUID | None
    note: str | None
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class NewSchedule:
    """A checked schedule to write (runtime/schedules.py checks it)."""

    tenant_id: str
    name: str
    cron: str
    timezone: str
    type: str
    data: dict[str, Any]
    active: bool
    misfire: str
    next_run_at: datetime | None
    created_by: str | None

    def params(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant_id,
            "name": self.name,
            "cron": self.cron,
            "timezone": self.timezone,
            "type": self.type,
            "data": json_text(self.data),
            "active": self.active,
            "misfire": self.misfire,
            "next_run_at": self.next_run_at,
            "created_by": self.created_by,
        }


class ScheduleStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _schedules(
        self, statement: LiteralString, params: dict[str, Any], conn: Conn | None = None
    ) -> list[Schedule]:
        async with (
            self.db.connection(conn) as c,
            c.cursor(row_factory=class_row(Schedule)) as cur,
        ):
            await cur.execute(statement, params)
            return await cur.fetchall()

    async def add_schedule(self, new: NewSchedule, schedule_id: UUID) -> Schedule | None:
        """None when the tenant already has a schedule of that name."""
        rows = await self._schedules(Q["schedule_insert"], {**new.params(), "id": schedule_id})
        return rows[0] if rows else None

    async def replace_schedule(self, new: NewSchedule) -> Schedule | None:
        """None when the tenant has no schedule of that name."""
        rows = await self._schedules(Q["schedule_replace"], new.params())
        return rows[0] if rows else None

    async def find_schedules(
        self, tenant: str | None, *, schedule_id: UUID | None = None, name: str | None = None
    ) -> list[Schedule]:
        """By id or name, in one tenant (None: any, so a name may match several)."""
        return await self._schedules(
            Q["schedule_find"], {"tenant": tenant, "id": schedule_id, "name": name}
        )

    async def list_schedules(
        self, tenant: str | None, limit: int, after: tuple[datetime, UUID] | None = None
    ) -> list[Schedule]:
        return await self._schedules(
            Q["schedule_list"],
            {
                "tenant": tenant,
                "limit": limit,
                "after_at": after[0] if after else None,
                "after_id": after[1] if after else None,
            },
        )

    async def delete_schedule(self, schedule_id: UUID, tenant: str | None) -> Schedule | None:
        rows = await self._schedules(Q["schedule_delete"], {"id": schedule_id, "tenant": tenant})
        return rows[0] if rows else None

    async def claim_due_schedules(
        self, limit: int, conn: Conn, now: datetime | None = None
    ) -> list[DueSchedule]:
        """Lock due schedules for the caller's transaction (SKIP LOCKED);
        due by the database clock unless ``now`` is given."""
        async with conn.cursor(row_factory=class_row(DueSchedule)) as cur:
            await cur.execute(Q["schedule_claim_due"], {"limit": limit, "now": now})
            return await cur.fetchall()

    async def record_schedule_runs(
        self,
        schedule: Schedule,
        runs: Sequence[tuple[datetime, str]],
        conn: Conn,
    ) -> set[datetime]:
        """Record ticks; returns those newly recorded (the others were already)."""
        cur = await conn.execute(
            Q["schedule_runs_record"],
            {
                "schedule_id": schedule.id,
                "tenant": schedule.tenant_id,
                "fire_at": [at for at, _ in runs],
                "status": [status for _, status in runs],
            },
        )
        return {row[0] for row in await cur.fetchall()}

    async def link_schedule_runs(
        self,
        schedule_id: UUID,
        links: Sequence[tuple[datetime, UUID | None, str | None]],
        conn: Conn,
    ) -> None:
        """Attach each tick's job; a tick without one (refused) becomes skipped."""
        if not links:
            return
        await conn.execute(
            Q["schedule_runs_link"],
            {
                "schedule_id": schedule_id,
                "fire_at": [at for at, _, _ in links],
                "job_id": [job for _, job, _ in links],
                "note": [note for _, _, note in links],
            },
        )

    async def advance_schedule(
        self,
        schedule_id: UUID,
        next_run_at: datetime | None,
        fired_at: datetime | None,
        conn: Conn,
    ) -> None:
        await conn.execute(
            Q["schedule_advance"],
            {"id": schedule_id, "next_run_at": next_run_at, "fired_at": fired_at},
        )

    async def schedule_runs(self, schedule_id: UUID, limit: int = 100) -> list[ScheduleRun]:
        async with (
            self.db.connection() as c,
            c.cursor(row_factory=class_row(ScheduleRun)) as cur,
        ):
            await cur.execute(Q["schedule_runs_list"], {"schedule_id": schedule_id, "limit": limit})
            return await cur.fetchall()

    async def purge_schedule_runs(self, days: int, limit: int = 1000) -> int:
        async with self.db.connection() as c:
            cur = await c.execute(Q["schedule_runs_purge"], {"days": days, "limit": limit})
            return cur.rowcount
