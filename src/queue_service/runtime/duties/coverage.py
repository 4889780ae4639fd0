"""Warn when ready jobs of a type have no live worker serving it: a worker
started without the plug-in, or none running the queue. Those jobs would
otherwise wait forever without a word."""

from __future__ import annotations

import time

import structlog

from queue_service.observability.metrics import UNSERVED_JOBS
from queue_service.store import Store

log = structlog.get_logger("queue_service.leader")

# Workers re-register every 10 s (worker.WORKER_REGISTER_SECONDS): three
# missed registrations and a worker no longer counts as serving.
LIVE_SECONDS = 30.0
REPEAT_SECONDS = 600.0


class UnservedTypesDuty:
    """Each round, the (queue, type) pairs with ready jobs and no live worker:
    a warning when one appears (repeated every ten minutes while it lasts),
    a line when it is served again, and the ``queue_unserved_jobs`` gauge."""

    name = "unserved_types"

    def __init__(self, store: Store, leader_interval: float) -> None:
        self.store = store
        # Slower than the leader's tick: the check reads every ready job.
        self.every_seconds = 6 * leader_interval
        # A worker starting beside the leader registers within a tick or two.
        self.grace_seconds = 3 * leader_interval
        self._warned: dict[tuple[str, str], float] = {}

    async def run(self) -> None:
        found = await self.store.unserved_job_types(LIVE_SECONDS, self.grace_seconds)
        now = time.monotonic()
        current = {(u.queue, u.type): u for u in found}
        for key in set(self._warned) - set(current):
            del self._warned[key]
            UNSERVED_JOBS.remove(*key)
            log.info("job type served again", queue=key[0], job_type=key[1])
        for key, u in current.items():
            UNSERVED_JOBS.labels(*key).set(u.waiting)
            last = self._warned.get(key)
            if last is not None and now - last < REPEAT_SECONDS:
                continue
            self._warned[key] = now
            log.warning(
                "jobs waiting for a type no live worker serves",
                queue=u.queue,
                job_type=u.type,
                waiting=u.waiting,
                oldest_seconds=round(u.oldest_seconds),
                fix="run a worker for this queue with the processor loaded"
                " (QUEUE_SERVICE_PROCESSORS or an installed plug-in); see docs/job-types.md",
            )
