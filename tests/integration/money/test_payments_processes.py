"""Three worker processes, 300 payments, one shared stripe bucket: the
Stripe-shaped server's own request times never show more than the bucket
allows, never more charges in flight than its cap, and every payment is
charged exactly once. The same code path as `bench --workload payments`."""

from __future__ import annotations

import orjson
import pytest

from queue_service.bench_payments import run_payments
from queue_service.settings import Settings

pytestmark = pytest.mark.slow

# Fast enough to keep the test short, small enough that 300 payments queue
# behind it: the bucket, not the workers, sets the pace.
BUCKET = {"size": 10, "refill_per_second": 25, "max_in_flight": 5}


def test_three_processes_pay_300_orders_once_each_within_the_stripe_bucket(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUEUE_SERVICE_OUTBOUND_LIMITS", orjson.dumps({"stripe": BUCKET}).decode())
    settings = Settings()
    report = run_payments(settings, database_url, 300)
    assert report["jobs"] == 300
    assert report["exactly_once"] is True, report
    assert report["bucket_held"] is True, report
    assert report["max_charges_in_flight"] <= BUCKET["max_in_flight"]
    # The bucket was the bottleneck, and the engine kept up with it.
    assert report["ratio_to_bucket"] >= 0.6, report
