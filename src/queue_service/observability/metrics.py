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

import os
import resource
import time
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# A `<name>_created` series per counter doubles what is exposed and is not
# in SPEC §8; the service owns its process, so turning it off globally is fine.
disable_created_metrics()  # type: ignore[no-untyped-call]

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
    "Attempts that snoozed (rate limit, open breaker, low wallet, waiting on money), per process.",
    ["queue", "type"],
    registry=REGISTRY,
)
JOBS_ENQUEUED = Counter(
    "queue_jobs_enqueued",
    "Jobs this process created (an idempotent replay is a hit, not an enqueue).",
    ["queue"],
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
UNSERVED_JOBS = Gauge(
    "queue_unserved_jobs",
    "Ready jobs of a type no live worker serves, as the leader last found them.",
    ["queue", "type"],
    registry=REGISTRY,
)

# -- money and effects (the processors) --------------------------------------
PAYMENTS_PROCESSED = Counter(
    "payments_processed",
    "Payments by outcome (succeeded, authorized, failed), per process.",
    ["currency", "status"],
    registry=REGISTRY,
)
# The two amounts are Gauges that only go up, not Counters: prometheus_client
# exposes a Counter as `<name>_total`, which would turn SPEC's
# `payment_amount_total_cents` into `payment_amount_total_cents_total`.
# PromQL's rate() and increase() do not look at the declared type (a process
# restart is a reset either way), so dashboards use them as counters.
PAYMENT_AMOUNT = Gauge(
    "payment_amount_total_cents",
    "Minor units charged (monotonic; use rate/increase), per process.",
    ["currency"],
    registry=REGISTRY,
)
REFUNDS_PROCESSED = Counter(
    "refunds_processed",
    "Refunds by outcome (succeeded, failed), per process.",
    ["currency", "status"],
    registry=REGISTRY,
)
REFUND_AMOUNT = Gauge(
    "refund_amount_total_cents",
    "Minor units refunded (monotonic, as payment_amount_total_cents), per process.",
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


# -- the process itself --------------------------------------------------------
class ProcessCollector(Collector):
    """service_uptime_seconds, service_memory_usage_bytes (resident set) and
    service_cpu_usage_percent (CPU time over wall time since the previous
    scrape, 100 = one core), read from /proc and the resource module at
    scrape time (psutil is not a dependency)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._last = (self.started, _cpu_seconds())

    def collect(self) -> Iterator[Metric]:
        now, cpu = time.monotonic(), _cpu_seconds()
        last_wall, last_cpu = self._last
        self._last = (now, cpu)
        wall = now - last_wall
        yield GaugeMetricFamily(
            "service_uptime_seconds", "Seconds since this process started.", now - self.started
        )
        yield GaugeMetricFamily(
            "service_memory_usage_bytes", "Resident memory of this process.", _rss_bytes()
        )
        yield GaugeMetricFamily(
            "service_cpu_usage_percent",
            "CPU used by this process since the previous scrape (100 = one core).",
            100.0 * (cpu - last_cpu) / wall if wall > 0 else 0.0,
        )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_bytes() -> float:
    try:
        with open("/proc/self/statm", "rb") as f:
            return float(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        # Not Linux: the peak resident size is the best the stdlib offers
        # (kilobytes on Linux, bytes on macOS; this branch is macOS).
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


PROCESS = ProcessCollector()
REGISTRY.register(PROCESS)
