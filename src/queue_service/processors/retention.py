"""What retention removes, one category per table or rule (SPEC §8, decision
0016): its window, whether rows are archived, its batched purge and its
capped dry-run count. cleanup.run, maintenance.run and `queue-service
retention` all read this one list."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from queue_service.core.catalog import DEFAULT_RETENTION_DAYS, EVENTS_GRACE_DAYS, RETENTION_RULES
from queue_service.settings import Settings
from queue_service.store import Store

# One batch: a short statement of its own (its own transaction), so no lock
# is held longer than one batch takes.
BATCH = 1000
# After each full batch the purge rests PACE times as long as the batch took,
# so it uses at most 1 / (1 + PACE) of one connection and of the database's
# CPU: unpaced, draining beside a 1 M-row purge ran at 0.53x (decision 0016).
PACE = 3.0
# One cleanup.run stops starting batches after this long; the next run goes on.
RUN_BUDGET_SECONDS = 300.0
# HmacVerifier.nonce_retention_seconds for the 60 s window: 2 x 60 + 60.
NONCE_RETENTION_SECONDS = 180.0
# Delivery records are kept as long as finished webhook jobs (SPEC §8).
WEBHOOK_DELIVERY_DAYS = 30
# The sent-ledger must outlive every retry and rescue of its job (hours at
# most); two weeks is ample, and twice the finished email jobs' window.
SENT_LEDGER_DAYS = 14
METRIC_SNAPSHOT_DAYS = 30  # SPEC §8
ALERT_DAYS = 7  # SPEC §8: resolved firings; open ones stay


@dataclass(frozen=True, slots=True)
class Category:
    """One kind of row retention removes."""

    name: str
    what: str
    window: str  # for people: "90 d", "TTL", "180 s"
    archived: bool
    job: str  # the maintenance job that purges it
    purge: Callable[[int], Awaitable[int]]  # (batch size) -> rows removed
    count: Callable[[int], Awaitable[int]]  # (cap) -> rows past the window, at most cap


def categories(store: Store, settings: Settings) -> list[Category]:
    """Every category, in the order cleanup.run and maintenance.run purge them."""
    found: list[Category] = []
    ruled: list[str] = []
    for rule in RETENTION_RULES:
        prefixes = list(rule.prefixes)
        ruled += prefixes
        found.append(
            _finished(
                store,
                "+".join(prefixes),
                "finished " + ", ".join(f"{p}.*" for p in prefixes) + " jobs",
                rule.days,
                prefixes,
                [],
                archive=rule.archive,
            )
        )
    dlq_days = settings.queue_service_dlq_retention_days
    found += [
        _finished(
            store,
            "other",
            "every other finished job",
            DEFAULT_RETENTION_DAYS,
            [],
            list(ruled),
            archive=False,
        ),
        Category(
            "dead_letters",
            "dead letters",
            f"{dlq_days} d",
            False,
            "cleanup.run",
            lambda n: store.purge_dead_letters(dlq_days, n),
            lambda cap: store.count_dead_letters_past(dlq_days, cap),
        ),
        Category(
            "events",
            "history of jobs no longer kept",
            f"{EVENTS_GRACE_DAYS} d",
            False,
            "cleanup.run",
            lambda n: store.purge_events(EVENTS_GRACE_DAYS, n),
            lambda cap: store.count_events_past(EVENTS_GRACE_DAYS, cap),
        ),
        Category(
            "webhook_deliveries",
            "webhook delivery records",
            f"{WEBHOOK_DELIVERY_DAYS} d",
            False,
            "cleanup.run",
            lambda n: store.purge_webhook_deliveries(WEBHOOK_DELIVERY_DAYS, n),
            lambda cap: store.count_webhook_deliveries_past(WEBHOOK_DELIVERY_DAYS, cap),
        ),
        Category(
            "sent_messages",
            "email and SMS sent-ledger",
            f"{SENT_LEDGER_DAYS} d",
            False,
            "cleanup.run",
            lambda n: store.purge_sent_messages(SENT_LEDGER_DAYS, n),
            lambda cap: store.count_sent_messages_past(SENT_LEDGER_DAYS, cap),
        ),
        Category(
            "metric_snapshots",
            "per-minute metric snapshots",
            f"{METRIC_SNAPSHOT_DAYS} d",
            False,
            "cleanup.run",
            lambda n: store.purge_metric_snapshots(METRIC_SNAPSHOT_DAYS, n),
            lambda cap: store.count_metric_snapshots_past(METRIC_SNAPSHOT_DAYS, cap),
        ),
        Category(
            "alerts",
            "resolved alert firings",
            f"{ALERT_DAYS} d",
            False,
            "cleanup.run",
            lambda n: store.purge_alerts(ALERT_DAYS, n),
            lambda cap: store.count_alerts_past(ALERT_DAYS, cap),
        ),
        Category(
            "idempotency_keys",
            "idempotency keys past their TTL",
            "TTL",
            False,
            "maintenance.run",
            store.purge_expired_keys,
            store.count_expired_keys,
        ),
        Category(
            "nonces",
            "service-auth nonces",
            f"{NONCE_RETENTION_SECONDS:g} s",
            False,
            "maintenance.run",
            lambda n: store.purge_nonces(NONCE_RETENTION_SECONDS, n),
            lambda cap: store.count_nonces_past(NONCE_RETENTION_SECONDS, cap),
        ),
    ]
    return found


def _finished(
    store: Store,
    name: str,
    what: str,
    days: int,
    prefixes: list[str],
    exclude: list[str],
    *,
    archive: bool,
) -> Category:
    async def purge(n: int) -> int:
        return await store.purge_finished(days, prefixes, exclude, archive, n)

    async def count(cap: int) -> int:
        return await store.count_finished_past(days, prefixes, exclude, cap)

    return Category(name, what, f"{days} d", archive, "cleanup.run", purge, count)


Progress = Callable[[Category, int], None]


async def purge(
    category: Category,
    *,
    batch: int = BATCH,
    max_batches: int | None = None,
    pace: float = PACE,
    deadline: float | None = None,
    progress: Progress | None = None,
) -> int:
    """Remove ``category``'s rows past their window, one batch per statement,
    until a batch comes back short, ``max_batches`` ran or the monotonic
    ``deadline`` passed; between full batches it rests ``pace`` times the
    batch's duration. ``progress`` hears each batch's count."""
    total, batches = 0, 0
    while max_batches is None or batches < max_batches:
        started = time.monotonic()
        n = int(await category.purge(batch))
        total += n
        batches += 1
        if progress is not None:
            progress(category, n)
        if n < batch or (deadline is not None and time.monotonic() >= deadline):
            break
        if pace > 0:
            await asyncio.sleep((time.monotonic() - started) * pace)
    return total


async def purge_all(
    found: Sequence[Category],
    *,
    max_batches: int | None = None,
    pace: float = PACE,
    budget_seconds: float | None = None,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Purge every category in turn; with ``budget_seconds``, categories
    reached after the budget is spent report 0 (the next run gets them)."""
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    removed: dict[str, int] = {}
    for c in found:
        if deadline is not None and time.monotonic() >= deadline:
            removed[c.name] = 0
            continue
        removed[c.name] = await purge(
            c, max_batches=max_batches, pace=pace, deadline=deadline, progress=progress
        )
    return removed
