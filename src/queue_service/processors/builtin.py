"""Built-in job types: the maintenance the leader schedules, the no-op the
benchmark runs, and the entry point that registers every platform job type."""

from __future__ import annotations

from queue_service.core.catalog import QueueConfig
from queue_service.core.jobs import Priority
from queue_service.processors import (
    analytics,
    messages,
    mints,
    orders,
    payments,
    refunds,
    reports,
    webhooks,
)
from queue_service.processors.base import EmptyPayload, Payload, processor
from queue_service.processors.context import JobContext
from queue_service.processors.retention import RUN_BUDGET_SECONDS, categories, purge_all

BENCH_QUEUE = QueueConfig("bench", concurrency=10)
# Bounded work per run, so one run never outlives its timeout; the next
# period continues where this one stopped.
MAX_BATCHES_PER_RUN = 200


class NoopPayload(Payload):
    i: int | None = None
    ts: float | None = None


@processor("bench.noop", payload=NoopPayload, queue="bench", priority=Priority.NORMAL)
async def noop(ctx: JobContext, payload: NoopPayload) -> None:
    """Does nothing: what the benchmark measures is the engine around it."""


@processor(
    "cleanup.run",
    payload=EmptyPayload,
    queue="background",
    priority=Priority.BACKGROUND,
    timeout_seconds=600,
    lease_seconds=60,
)
async def cleanup(ctx: JobContext, payload: EmptyPayload) -> dict[str, int]:
    """Retention (SPEC §8): archive or delete finished jobs past their window,
    and dead letters, history, delivery records, the sent-ledger, metric
    snapshots and resolved alerts past theirs (processors/retention.py)."""
    found = categories(ctx.deps.store, ctx.deps.settings)
    return await purge_all(
        [c for c in found if c.job == "cleanup.run"],
        max_batches=MAX_BATCHES_PER_RUN,
        budget_seconds=RUN_BUDGET_SECONDS,
    )


@processor(
    "maintenance.run",
    payload=EmptyPayload,
    queue="background",
    priority=Priority.BACKGROUND,
    timeout_seconds=600,
    lease_seconds=60,
)
async def run_maintenance(ctx: JobContext, payload: EmptyPayload) -> dict[str, int]:
    """Expire idempotency keys past their TTL and service nonces past the
    window in which a replay could still pass the timestamp check."""
    found = categories(ctx.deps.store, ctx.deps.settings)
    return await purge_all(
        [c for c in found if c.job == "maintenance.run"],
        max_batches=MAX_BATCHES_PER_RUN,
        budget_seconds=RUN_BUDGET_SECONDS,
    )


# The entry point ``queue_service.processors: builtin``.
BUILTIN: list[object] = [
    BENCH_QUEUE,
    noop,
    cleanup,
    run_maintenance,
    *payments.PROCESSORS,
    *refunds.PROCESSORS,
    *mints.PROCESSORS,
    *orders.PROCESSORS,
    *messages.PROCESSORS,
    *webhooks.PROCESSORS,
    *analytics.PROCESSORS,
    *reports.PROCESSORS,
]
