"""Leader duties on one elected instance: rescue stalled jobs, prune the
worker registry, and enqueue the periodic maintenance jobs.

Election is a session advisory lock; a dead leader's lock goes with its
connection, and another instance takes over at its next attempt (one
interval).
"""

from __future__ import annotations

import asyncio

import structlog

from queue_service.runtime.backoff import Backoff, is_transient
from queue_service.runtime.manager import JobManager
from queue_service.store.session import LeaderSession

log = structlog.get_logger("queue_service.leader")

RESCUE_BATCH = 500
WORKER_SILENCE_SECONDS = 120.0
MAINTENANCE_JOBS = ("cleanup.run", "maintenance.run")


class Leader:
    def __init__(
        self,
        manager: JobManager,
        session: LeaderSession,
        *,
        interval: float = 5.0,
        maintenance_every_seconds: int = 3600,
    ) -> None:
        self.manager = manager
        self.store = manager.store
        self.session = session
        self.interval = interval
        self.maintenance_every = maintenance_every_seconds
        self.is_leader = False

    async def run(self) -> None:
        backoff = Backoff(first=0.5, cap=self.interval)
        try:
            while True:
                try:
                    await self.tick()
                    backoff.reset()
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    self._step_down()
                    await backoff.wait(log, "leader duties", exc)
                    continue
                await asyncio.sleep(self.interval)
        finally:
            await asyncio.shield(self.session.release())

    async def tick(self) -> None:
        """One election attempt and, if elected, one round of duties."""
        if not await self.session.try_acquire():
            self._step_down()
            return
        if not self.is_leader:
            self.is_leader = True
            log.info("became leader")
        await self.rescue()
        await self.store.prune_workers(WORKER_SILENCE_SECONDS)
        await self.schedule_maintenance()

    def _step_down(self) -> None:
        if self.is_leader:
            self.is_leader = False
            log.warning("no longer leader")

    async def rescue(self) -> None:
        while True:
            report = await self.store.rescue_expired(RESCUE_BATCH)
            if report.rescued or report.failed:
                log.warning(
                    "rescued stalled jobs",
                    rescued=len(report.rescued),
                    failed=len(report.failed),
                    job_ids=[str(i) for i in (report.rescued + report.failed)[:20]],
                )
            if len(report.rescued) + len(report.failed) < RESCUE_BATCH:
                return

    async def schedule_maintenance(self) -> None:
        """Enqueue each maintenance job once per period, whoever leads."""
        now = await self.store.db_now()
        bucket = int(now.timestamp()) // self.maintenance_every
        for job_type in MAINTENANCE_JOBS:
            if job_type in self.manager.registry.job_types:
                await self.manager.enqueue_system(job_type, f"{job_type}:{bucket}")
