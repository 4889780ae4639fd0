"""Fire due cron schedules: each tick once, whoever leads, across restarts.

One transaction per pass claims the due schedules (FOR UPDATE SKIP LOCKED),
records their ticks (unique per schedule and fire time: a racing leader's
insert conflicts and it enqueues nothing), enqueues the jobs keyed
``schedule:{id}:{fire_at}`` and moves each schedule to its next tick.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from uuid import UUID

import structlog

from queue_service.core.cron import MISFIRE_GRACE, CronError, CronSpec, Misfire, plan_pass
from queue_service.core.jobs import EnqueueRequest
from queue_service.errors import EnqueueError
from queue_service.runtime.backoff import is_transient
from queue_service.runtime.manager import JobManager
from queue_service.store import Conn
from queue_service.store.schedules import DueSchedule

log = structlog.get_logger("queue_service.leader")

CLAIM_BATCH = 100
MAX_PASSES_PER_RUN = 50
RUNS_RETENTION_DAYS = 30
PRUNE_EVERY_SECONDS = 3600.0


def job_key(schedule_id: UUID, fire_at: datetime) -> str:
    return f"schedule:{schedule_id}:{fire_at.isoformat()}"


class ScheduleDuty:
    name = "schedules"
    every_seconds = 0.0  # every leader tick: an index-bounded scan of due rows

    def __init__(self, manager: JobManager, *, grace: timedelta = MISFIRE_GRACE) -> None:
        self.manager = manager
        self.store = manager.store
        self.grace = grace
        self._pruned_at: float | None = None
        self._behind = False

    async def run(self) -> None:
        # More passes while a batch came back full or a schedule is still
        # behind (caught up MAX_TICKS_PER_PASS ticks at a time), bounded so
        # the other duties are not starved.
        for _ in range(MAX_PASSES_PER_RUN):
            self._behind = False
            if await self.fire_due() < CLAIM_BATCH and not self._behind:
                break
        now = time.monotonic()
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY_SECONDS:
            self._pruned_at = now
            await self.store.purge_schedule_runs(RUNS_RETENTION_DAYS)

    async def fire_due(self, now: datetime | None = None) -> int:
        """One pass in one transaction; returns how many schedules it claimed.
        ``now`` replaces the database clock (tests' fake clock)."""
        async with self.store.db.transaction() as conn:
            due = await self.store.claim_due_schedules(CLAIM_BATCH, conn, now)
            for schedule in due:
                try:
                    # A savepoint each: one schedule's bug spoils no other's ticks.
                    async with conn.transaction():
                        await self._fire(schedule, conn)
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    log.exception("schedule failed to fire", schedule=str(schedule.id))
        return len(due)

    async def _fire(self, schedule: DueSchedule, conn: Conn) -> None:
        assert schedule.next_run_at is not None  # the claim takes due rows only
        try:
            spec = CronSpec.parse(schedule.cron, schedule.timezone)
        except CronError as exc:
            log.error("schedule deactivated: %s", exc, schedule=schedule.name)
            await self.store.advance_schedule(schedule.id, None, None, conn)
            return
        plan = plan_pass(
            spec, Misfire(schedule.misfire), schedule.next_run_at, schedule.now, grace=self.grace
        )
        if plan.next_run_at is not None and plan.next_run_at <= schedule.now:
            self._behind = True
        recorded = await self.store.record_schedule_runs(
            schedule, [(r.fire_at, r.status.value) for r in plan.runs], conn
        )
        jobs: dict[datetime, UUID | None] = {}
        notes: dict[datetime, str | None] = {}
        for tick in plan.job_ticks:
            if tick not in recorded:
                continue  # another leader's pass fired it
            jobs[tick], notes[tick] = await self._enqueue(schedule, tick, conn)
        await self.store.link_schedule_runs(
            schedule.id,
            [
                (r.fire_at, jobs[r.job_at], notes[r.job_at])
                for r in plan.runs
                if r.fire_at in recorded and r.job_at in jobs
            ],
            conn,
        )
        fired = [tick for tick, job in jobs.items() if job is not None]
        if fired:
            log.info(
                "schedule fired",
                schedule=schedule.name,
                tenant=schedule.tenant_id,
                fire_at=max(fired).isoformat(),
                job_id=str(jobs[max(fired)]),
            )
        await self.store.advance_schedule(
            schedule.id, plan.next_run_at, max(fired, default=None), conn
        )
        late = [r for r in plan.runs if r.fire_at in recorded and r.status != "fired"]
        if late:
            log.warning(
                "schedule ticks missed while no leader ran",
                schedule=schedule.name,
                tenant=schedule.tenant_id,
                missed=len(late),
                misfire=schedule.misfire,
                first=late[0].fire_at.isoformat(),
                last=late[-1].fire_at.isoformat(),
            )

    async def _enqueue(
        self, schedule: DueSchedule, tick: datetime, conn: Conn
    ) -> tuple[UUID | None, str | None]:
        """The tick's job, or why there is none (its type or data no longer valid)."""
        request = EnqueueRequest(
            type=schedule.type,
            data=schedule.data,
            tenant_id=schedule.tenant_id,
            idempotency_key=job_key(schedule.id, tick),
            created_by=f"schedule:{schedule.name}",
        )
        try:
            async with conn.transaction():
                done = await self.manager.enqueue(request, conn=conn)
        except EnqueueError as exc:
            log.error(
                "schedule tick refused", schedule=schedule.name, tick=tick.isoformat(), error=exc
            )
            return None, f"job refused: {exc}"
        return done.job_id, None
