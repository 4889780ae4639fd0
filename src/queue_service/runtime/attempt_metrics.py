"""The attempt hook that feeds the per-process job metrics: outcomes,
durations, snoozes and the worker's slots in use against its concurrency."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from queue_service.core.catalog import QueueConfig
from queue_service.core.jobs import ClaimedJob
from queue_service.core.outcome import (
    Completed,
    CompletedInTransaction,
    Failed,
    Outcome,
    Retry,
    Snoozed,
)
from queue_service.observability.metrics import (
    JOB_DURATION,
    JOBS_FAILED,
    JOBS_PROCESSED,
    JOBS_SNOOZED,
    WORKER_SLOTS_IN_USE,
    WORKER_SLOTS_MAX,
)


class MetricsHook:
    """Counts each attempt by how it ended, as the worker persists it: a
    completion is one `completed` history row, a retry one `retry_scheduled`,
    a dead letter one `failed`, a snooze one `snoozed`. Attempts interrupted
    by shutdown or a lost lease write no history and are not counted."""

    def __init__(self, queues: Iterable[QueueConfig]) -> None:
        for queue in queues:
            WORKER_SLOTS_MAX.labels(queue.name).set(queue.concurrency)
            WORKER_SLOTS_IN_USE.labels(queue.name).set(0)

    def before(self, job: ClaimedJob) -> Any:
        WORKER_SLOTS_IN_USE.labels(job.queue).inc()
        return None

    def after(self, job: ClaimedJob, outcome: Outcome, duration_seconds: float, state: Any) -> None:
        WORKER_SLOTS_IN_USE.labels(job.queue).dec()
        if isinstance(outcome, Completed | CompletedInTransaction):
            JOBS_PROCESSED.labels(job.queue, job.type).inc()
        elif isinstance(outcome, Retry):
            JOBS_FAILED.labels(job.queue, job.type, "retry").inc()
        elif isinstance(outcome, Failed):
            JOBS_FAILED.labels(job.queue, job.type, "dead_lettered").inc()
        elif isinstance(outcome, Snoozed):
            # A snooze is "not now", not work: kept out of the duration too,
            # or a rate-limited backlog would drag the p95 towards zero.
            JOBS_SNOOZED.labels(job.queue, job.type).inc()
            return
        else:
            return
        JOB_DURATION.labels(job.queue, job.type).observe(duration_seconds)
