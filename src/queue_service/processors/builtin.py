"""Built-in job types: the maintenance the leader schedules, the no-op the
benchmark runs, and the entry point that registers every platform job type."""

from __future__ import annotations

from typing import Any

from queue_service.core.catalog import (
    DEFAULT_RETENTION_DAYS,
    EVENTS_GRACE_DAYS,
    RETENTION_RULES,
    QueueConfig,
)
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

BENCH_QUEUE = QueueConfig("bench", concurrency=10)
# Bounded work per run, so one run never outlives its timeout; the next
# period continues where this one stopped.
MAX_BATCHES_PER_RUN = 200
BATCH = 1000
# HmacVerifier.nonce_retention_seconds for the 60 s window: 2 x 60 + 60.
NONCE_RETENTION_SECONDS = 180.0
# Delivery records are kept as long as finished webhook jobs (SPEC §8).
WEBHOOK_DELIVERY_DAYS = 30
# The sent-ledger must outlive every retry and rescue of its job (hours at
# most); two weeks is ample, and twice the finished email jobs' window.
SENT_LEDGER_DAYS = 14


class NoopPayload(Payload):
    i: int | None = None
    ts: float | None = None


@processor("bench.noop", payload=NoopPayload, queue="bench", priority=Priority.NORMAL)
async def noop(ctx: JobContext, payload: NoopPayload) -> None:
    """Does nothing: what the benchmark measures is the engine around it."""


async def _drain(purge: Any) -> int:
    total = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        n = int(await purge())
        total += n
        if n < BATCH:
            break
    return total


@processor(
    "cleanup.run",
    payload=EmptyPayload,
    queue="background",
    priority=Priority.BACKGROUND,
    timeout_seconds=600,
    lease_seconds=60,
)
async def cleanup(ctx: JobContext, payload: EmptyPayload) -> dict[str, int]:
    """Retention (SPEC §8): archive or delete finished jobs past their window."""
    store = ctx.deps.store
    report: dict[str, int] = {}
    ruled: list[str] = []
    for rule in RETENTION_RULES:
        prefixes = list(rule.prefixes)
        ruled += prefixes
        report["+".join(prefixes)] = await _drain(
            lambda p=prefixes, r=rule: store.purge_finished(r.days, p, [], r.archive, BATCH)
        )
    report["other"] = await _drain(
        lambda: store.purge_finished(DEFAULT_RETENTION_DAYS, [], ruled, False, BATCH)
    )
    dlq_days = ctx.deps.settings.queue_service_dlq_retention_days
    report["dead_letters"] = await _drain(lambda: store.purge_dead_letters(dlq_days, BATCH))
    report["events"] = await _drain(lambda: store.purge_events(EVENTS_GRACE_DAYS, BATCH))
    report["webhook_deliveries"] = await _drain(
        lambda: store.purge_webhook_deliveries(WEBHOOK_DELIVERY_DAYS, BATCH)
    )
    report["sent_messages"] = await _drain(
        lambda: store.purge_sent_messages(SENT_LEDGER_DAYS, BATCH)
    )
    return report


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
    store = ctx.deps.store
    keys = await _drain(lambda: store.purge_expired_keys(BATCH))
    nonces = await _drain(lambda: store.purge_nonces(NONCE_RETENTION_SECONDS, BATCH))
    return {"idempotency_keys": keys, "nonces": nonces}


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
