"""`queue-service bench --workload payments`: payment.process jobs drained by
three `queue-service worker` processes against the Stripe-shaped server of
queue_service.testing, through the real Stripe adapter and the shared stripe
bucket. Reports jobs/s beside what the bucket allows in the same run, and
proves from the server's own request times that the bucket held and that
every payment was charged exactly once.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from queue_service.core.buckets import BucketLimits, window_allowance, worst_window
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import open_runtime
from queue_service.settings import Settings
from queue_service.testing.stripe import FakeStripe

JOB_TYPE = "payment.process"
TENANT = "bench"
PROCESSES = 3
CREATE_PATH = "/v1/payment_intents"
BENCH_STRIPE_KEY = "sk_test_bench_" + "0" * 24
# Tokens are granted on the database clock, requests timed on arrival at the
# server: a request slower from grant to arrival than a later one narrows the
# server's window by the difference (decision 0009). With reservations the
# bucket runs at exactly its rate, so that difference shows: a fresh worker
# process's first call arrives 0.15-0.30 s after its grant (median 4 ms).
SLACK_SECONDS = 0.5
Progress = Callable[[str], None]


def _request(i: int) -> EnqueueRequest:
    return EnqueueRequest(
        type=JOB_TYPE,
        data={
            "order_id": f"bench-order-{i}",
            "user_id": f"bench-user-{i % 100}",
            "amount": 1000 + i % 5000,
            "currency": "USD",
            "payment_method_id": "pm_card_visa",
        },
        tenant_id=TENANT,
    )


async def _enqueue(settings: Settings, conninfo: str, jobs: int) -> None:
    async with open_runtime(settings, conninfo, pool_size=2) as rt:
        for lo in range(0, jobs, 500):
            await rt.manager.enqueue_many([_request(i) for i in range(lo, min(jobs, lo + 500))])


async def _wait_for_all(
    settings: Settings,
    conninfo: str,
    jobs: int,
    procs: list[subprocess.Popen[bytes]],
    deadline: float,
    log_dir: Path,
) -> None:
    """Until every payment has finished, on the database's truth (one pool for
    the whole wait); an error if a worker died or the time ran out."""
    async with open_runtime(settings, conninfo, pool_size=2) as rt:
        while True:
            counts = (await rt.store.queue_counts(TENANT)).get("money")
            finished = 0 if counts is None else counts.completed + counts.failed + counts.cancelled
            if finished >= jobs:
                return
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(
                    f"{finished} of {jobs} payments finished before the workers stopped or"
                    f" the time ran out; see {log_dir}"
                )
            await asyncio.sleep(0.5)


async def _window(settings: Settings, conninfo: str) -> tuple[float, int, int]:
    async with open_runtime(settings, conninfo, pool_size=2) as rt:
        first, last, count = await rt.store.bench_window(JOB_TYPE)
        snoozes = await rt.store.bench_event_count(JOB_TYPE, "snoozed")
    if first is None or last is None:
        raise RuntimeError("no payment completed")
    return (last - first).total_seconds(), count, snoozes


def _workers(conninfo: str, stripe_url: str, log_dir: Path) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "DATABASE_URL": conninfo,
        "STRIPE_SECRET_KEY": BENCH_STRIPE_KEY,
        "STRIPE_API_BASE": stripe_url,
        # Their follow-ups (emails, webhooks) wait on queues no bench worker serves.
        "QUEUE_SERVICE_ENV": "development",
        "QUEUE_SERVICE_OUTBOX_DIR": str(log_dir / "outbox"),
        "QUEUE_SERVICE_AUTO_MIGRATE": "false",
        "QUEUE_SERVICE_LOG_LEVEL": "warning",
        "QUEUE_SERVICE_POLL_INTERVAL_SECONDS": "0.2",
    }
    env.pop("STRIPE_SECRET_KEY_FILE", None)
    procs = []
    for n in range(PROCESSES):
        with (log_dir / f"worker-{n}.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "queue_service.cli", "worker", "--queues", "money"],
                    env={**env, "QUEUE_SERVICE_WORKER_ID": f"bench-payments-{n}"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return procs


def run_payments(
    settings: Settings, conninfo: str, jobs: int, progress: Progress = lambda _: None
) -> dict[str, Any]:
    """Drain ``jobs`` payments with three worker processes; the figures."""
    limits: BucketLimits = settings.outbound_limits["stripe"]
    stripe = FakeStripe().start()
    log_dir = Path(tempfile.mkdtemp(prefix="qs-bench-payments-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        asyncio.run(_enqueue(settings, conninfo, jobs))
        progress(
            f"{jobs} payments, {PROCESSES} worker processes, stripe bucket "
            f"{limits.size:g} / {limits.refill_per_second:g} per s / {limits.max_in_flight}"
            f" in flight (QUEUE_SERVICE_OUTBOUND_LIMITS); worker logs in {log_dir}"
        )
        procs = _workers(conninfo, stripe.url, log_dir)
        # Long enough for the bucket to pass every job twice over.
        deadline = time.monotonic() + 60 + 2 * jobs / limits.refill_per_second
        asyncio.run(_wait_for_all(settings, conninfo, jobs, procs, deadline, log_dir))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        stripe.stop()
    elapsed, completed, snoozes = asyncio.run(_window(settings, conninfo))
    arrivals = sorted(r.at for r in stripe.posts(CREATE_PATH))
    count, seconds, excess = worst_window(limits, arrivals, SLACK_SECONDS)
    allowed_rate = window_allowance(limits, elapsed) / elapsed
    rate = completed / elapsed
    return {
        "jobs": completed,
        "processes": PROCESSES,
        "elapsed_s": round(elapsed, 3),
        "rate": round(rate, 1),
        "bucket": f"{limits.size:g}/{limits.refill_per_second:g}/{limits.max_in_flight}",
        "bucket_allows_rate": round(allowed_rate, 1),
        "ratio_to_bucket": round(rate / allowed_rate, 3),
        "charges": stripe.charge_count,
        "charge_requests": len(arrivals),
        "max_charges_in_flight": stripe.max_creates_in_flight,
        "worst_window": f"{count} requests in {seconds:.2f} s (allowance + {SLACK_SECONDS} s)",
        "bucket_held": excess <= 0 and stripe.max_creates_in_flight <= limits.max_in_flight,
        "exactly_once": stripe.charge_count == completed == len(arrivals),
        "snoozes": snoozes,
    }
