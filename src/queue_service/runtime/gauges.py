"""Database-true gauges (queue depth, active, oldest age, DLQ, wallet, outbound
buckets and breakers) read at scrape time, and the /metrics text of a process.

prometheus_client collects synchronously, and the service's event loop must
never wait on the database inside a collector: the async caller reads the
database first (``DatabaseGauges.read``, cached ~1 s and shared by concurrent
scrapers), then renders the text from that reading with no I/O (in a thread).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from queue_service.core.base58 import short_address
from queue_service.core.buckets import BreakerPolicy, BucketLimits
from queue_service.observability.metrics import REGISTRY
from queue_service.runtime.outbound import read_states
from queue_service.store import Store
from queue_service.store.metrics import LiveQueue
from queue_service.store.mints import WalletBalance
from queue_service.store.outbound import OutboundState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CACHE_SECONDS = 1.0
BREAKER_STATES = ("closed", "open", "half_open")


@dataclass(frozen=True, slots=True)
class QueueGauges:
    """Every known queue's live figures (zeros for a queue with no jobs)."""

    queues: list[LiveQueue]
    dead_letters: dict[str, int]


@dataclass(frozen=True, slots=True)
class Gauges(QueueGauges):
    """The platform's database-true figures at one moment."""

    outbound: list[OutboundState] = field(default_factory=list)
    wallets: list[WalletBalance] = field(default_factory=list)


async def read_queue_gauges(
    store: Store, queue_names: Iterable[str], tenant: str | None = None
) -> QueueGauges:
    """Queue figures for one tenant or all; ``store`` may be a tenant's RLS store."""
    found = {q.queue: q for q in await store.metric_live_queues(tenant)}
    names = sorted(set(queue_names) | set(found))
    return QueueGauges(
        queues=[found.get(n) or LiveQueue(n, 0, 0, 0, None) for n in names],
        dead_letters={d.queue: d.dead_letters for d in await store.metric_dead_letters(tenant)},
    )


class DatabaseGauges:
    """The platform-wide reading, at most one database round per
    ``max_age`` seconds however many scrapers ask at once."""

    def __init__(
        self,
        store: Store,
        queue_names: Iterable[str],
        limits: Mapping[str, BucketLimits],
        breaker: BreakerPolicy,
        *,
        max_age: float = CACHE_SECONDS,
    ) -> None:
        self.store = store
        self.queue_names = list(queue_names)
        self.limits = limits
        self.breaker = breaker
        self.max_age = max_age
        self._reading: Gauges | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def read(self) -> Gauges:
        async with self._lock:
            if self._reading is None or time.monotonic() - self._read_at >= self.max_age:
                self._reading = await self._read()
                self._read_at = time.monotonic()
            return self._reading

    async def _read(self) -> Gauges:
        queues = await read_queue_gauges(self.store, self.queue_names)
        return Gauges(
            queues=queues.queues,
            dead_letters=queues.dead_letters,
            outbound=await read_states(self.store, self.limits, self.breaker),
            wallets=await self.store.wallet_balances(),
        )


class _ReadingCollector(Collector):
    """Metric families from one reading (no I/O: see the module docstring)."""

    def __init__(self, gauges: Gauges) -> None:
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        g = self.gauges
        size = GaugeMetricFamily(
            "queue_size",
            "Jobs waiting per queue (status: waiting = due, delayed = due later).",
            labels=["queue", "status"],
        )
        active = GaugeMetricFamily("queue_active_jobs", "Jobs running now.", labels=["queue"])
        oldest = GaugeMetricFamily(
            "oldest_job_age_seconds",
            "Seconds the oldest due waiting job has waited (0: none).",
            labels=["queue"],
        )
        dead = GaugeMetricFamily(
            "queue_dead_letter_jobs", "Dead letters not yet replayed.", labels=["queue"]
        )
        for q in g.queues:
            size.add_metric([q.queue, "waiting"], q.waiting)
            size.add_metric([q.queue, "delayed"], q.delayed)
            active.add_metric([q.queue], q.active)
            oldest.add_metric([q.queue], q.oldest_waiting_age_seconds or 0.0)
            dead.add_metric([q.queue], g.dead_letters.get(q.queue, 0))
        yield from (size, active, oldest, dead)
        yield from _outbound_families(g.outbound)
        balance = GaugeMetricFamily(
            "solana_wallet_balance_sol",
            "The minting wallet's balance at its last check (before a mint).",
            labels=["wallet"],
        )
        for w in g.wallets:
            balance.add_metric([short_address(w.address)], float(w.balance_sol))
        yield balance


def _outbound_families(states: list[OutboundState]) -> Iterator[Metric]:
    tokens = GaugeMetricFamily(
        "queue_rate_limiter_tokens",
        "Tokens in the outbound bucket now (shared by every process).",
        labels=["service"],
    )
    capacity = GaugeMetricFamily(
        "queue_rate_limiter_capacity", "The outbound bucket's size.", labels=["service"]
    )
    in_flight = GaugeMetricFamily(
        "queue_outbound_in_flight", "Calls to the service in flight now.", labels=["service"]
    )
    max_in_flight = GaugeMetricFamily(
        "queue_outbound_max_in_flight", "Calls allowed in flight at once.", labels=["service"]
    )
    stopped = GaugeMetricFamily(
        "queue_outbound_stopped", "1 while an emergency stop holds calls.", labels=["service"]
    )
    breaker = GaugeMetricFamily(
        "queue_circuit_breaker_state",
        "1 for the breaker's current state (closed, open, half_open), 0 for the others.",
        labels=["service", "state"],
    )
    for s in states:
        tokens.add_metric([s.service], s.tokens)
        capacity.add_metric([s.service], s.size)
        in_flight.add_metric([s.service], s.in_flight)
        max_in_flight.add_metric([s.service], s.max_in_flight)
        stopped.add_metric([s.service], 1.0 if s.stopped_at is not None else 0.0)
        for state in BREAKER_STATES:
            breaker.add_metric([s.service, state], 1.0 if s.breaker_state == state else 0.0)
    yield from (tokens, capacity, in_flight, max_in_flight, stopped, breaker)


def render(gauges: Gauges) -> bytes:
    """The /metrics text: this process's counters, then the database's gauges."""
    reading = CollectorRegistry(auto_describe=False)
    reading.register(_ReadingCollector(gauges))
    return generate_latest(REGISTRY) + generate_latest(reading)


def process_json() -> dict[str, Any]:
    """This process's counters, histograms and gauges as JSON (/metrics/json)."""
    families: dict[str, Any] = {}
    for family in REGISTRY.collect():
        families[family.name] = {
            "type": family.type,
            "samples": [
                {"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples
            ],
        }
    return families
