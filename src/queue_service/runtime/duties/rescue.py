"""Rescue jobs whose worker stopped heart-beating; forget silent workers."""

from __future__ import annotations

import structlog

from queue_service.store import Store

log = structlog.get_logger("queue_service.leader")

RESCUE_BATCH = 500
WORKER_SILENCE_SECONDS = 120.0


class RescueDuty:
    """Expired leases back to waiting, or to failed + DLQ when exhausted."""

    name = "rescue"
    every_seconds = 0.0

    def __init__(self, store: Store) -> None:
        self.store = store

    async def run(self) -> None:
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


class PruneWorkersDuty:
    name = "prune_workers"
    every_seconds = 0.0

    def __init__(self, store: Store) -> None:
        self.store = store

    async def run(self) -> None:
        await self.store.prune_workers(WORKER_SILENCE_SECONDS)
