"""Enqueue the maintenance job types once per period, whoever leads."""

from __future__ import annotations

from queue_service.runtime.manager import JobManager

MAINTENANCE_JOBS = ("cleanup.run", "maintenance.run")


class MaintenanceDuty:
    name = "maintenance"
    every_seconds = 0.0  # cheap: a keyed enqueue that replays within the period

    def __init__(self, manager: JobManager, period_seconds: int = 3600) -> None:
        self.manager = manager
        self.period_seconds = period_seconds

    async def run(self) -> None:
        now = await self.manager.store.db_now()
        bucket = int(now.timestamp()) // self.period_seconds
        for job_type in MAINTENANCE_JOBS:
            if job_type in self.manager.registry.job_types:
                await self.manager.enqueue_system(job_type, f"{job_type}:{bucket}")
