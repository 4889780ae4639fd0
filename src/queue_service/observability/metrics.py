"""The service's Prometheus metrics, exactly the SPEC §8 names and labels.

The counters and histograms here are per process (each `serve` / `worker` /
`api` process counts what it did; Prometheus sums across processes). Queue
gauges (`queue_size`, `queue_active_jobs`, `oldest_job_age_seconds`, the DLQ,
wallet balance, bucket tokens, breaker states) are not here: a collector reads
them from the database at scrape time, so they are true across processes.
Everything registers on REGISTRY, not the client's global default, so tests
and several apps in one process never collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

# -- every job (the attempt hook) -------------------------------------------
JOBS_PROCESSED = Counter(
    "queue_jobs_processed",
    "Attempts that completed their job, per process.",
    ["queue", "type"],
    registry=REGISTRY,
)
JOBS_FAILED = Counter(
    "queue_jobs_failed",
    "Attempts that ended in failure (status: retry or dead_lettered), per process.",
    ["queue", "type", "status"],
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "queue_job_processing_duration_seconds",
    "How long one attempt ran, per process.",
    ["queue", "type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
JOBS_SNOOZED = Counter(
    "queue_jobs_snoozed",
    "Attempts that snoozed (rate limit, open breaker, low wallet, waiting on money), "
    "per process.",
    ["queue", "type"],
    registry=REGISTRY,
)
IDEMPOTENCY_HITS = Counter(
    "queue_idempotency_hits",
    "Enqueues answered by an existing job under the same idempotency key, per process.",
    ["queue"],
    registry=REGISTRY,
)
WORKER_SLOTS_IN_USE = Gauge(
    "queue_worker_slots_in_use",
    "Jobs this worker process is running now, per queue.",
    ["queue"],
    registry=REGISTRY,
)
WORKER_SLOTS_MAX = Gauge(
    "queue_worker_slots_max",
    "This worker process's concurrency, per queue.",
    ["queue"],
    registry=REGISTRY,
)

# -- money and effects (the processors) --------------------------------------
PAYMENTS_PROCESSED = Counter(
    "payments_processed",
    "Payments by outcome (succeeded, authorized, failed), per process.",
    ["currency", "status"],
    registry=REGISTRY,
)
PAYMENT_AMOUNT = Counter(
    "payment_amount_total_cents",
    "Minor units charged, per process.",
    ["currency"],
    registry=REGISTRY,
)
REFUNDS_PROCESSED = Counter(
    "refunds_processed",
    "Refunds by outcome (succeeded, failed), per process.",
    ["currency", "status"],
    registry=REGISTRY,
)
REFUND_AMOUNT = Counter(
    "refund_amount_total_cents",
    "Minor units refunded, per process.",
    ["currency"],
    registry=REGISTRY,
)
NFTS_MINTED = Counter("nfts_minted", "Tickets minted, per process.", registry=REGISTRY)
NFT_TRANSFERS = Counter(
    "nft_transfers", "NFT transfers confirmed on chain, per process.", registry=REGISTRY
)
EMAILS_SENT = Counter(
    "emails_sent", "Emails accepted by the relay, per process.", ["template"], registry=REGISTRY
)
EMAILS_FAILED = Counter(
    "emails_failed", "Email attempts that failed, per process.", ["template"], registry=REGISTRY
)
WEBHOOKS_SENT = Counter(
    "webhooks_sent", "Webhooks a receiver accepted, per process.", registry=REGISTRY
)
WEBHOOKS_FAILED = Counter(
    "webhooks_failed", "Webhook deliveries that failed, per process.", registry=REGISTRY
)
ALERTS_SENT = Counter(
    "alerts_sent",
    "Alert notifications sent, per process (the leader's).",
    ["alert", "severity", "channel"],
    registry=REGISTRY,
)
