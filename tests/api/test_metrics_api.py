"""/metrics and /metrics/json through the real app: SPEC §8's names exactly,
the optional bearer token, database-true gauges and tenant scoping."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from queue_service.runtime.manager import EnqueueRequest
from tests.api.conftest import OTHER_TENANT, TENANT, Api, OpenApi, worker_running
from tests.support.waiting import eventually

# SPEC §8, word for word.
SPEC_NAMES = (
    "queue_jobs_processed_total",
    "queue_jobs_failed_total",
    "queue_job_processing_duration_seconds",
    "queue_active_jobs",
    "queue_size",
    "oldest_job_age_seconds",
    "payments_processed_total",
    "payment_amount_total_cents",
    "refunds_processed_total",
    "refund_amount_total_cents",
    "nfts_minted_total",
    "nft_transfers_total",
    "solana_wallet_balance_sol",
    "emails_sent_total",
    "emails_failed_total",
    "webhooks_sent_total",
    "webhooks_failed_total",
    "service_uptime_seconds",
    "service_memory_usage_bytes",
    "service_cpu_usage_percent",
    "alerts_sent_total",
)
# "plus rate-limiter tokens, idempotency hits, worker concurrency in use and
# circuit-breaker states".
EXTRA_NAMES = (
    "queue_rate_limiter_tokens",
    "queue_idempotency_hits_total",
    "queue_worker_slots_in_use",
    "queue_worker_slots_max",
    "queue_circuit_breaker_state",
    "queue_jobs_snoozed_total",
    "queue_dead_letter_jobs",
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(api: Api, **headers: str) -> str:
    response = await api.client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


async def enqueue(api: Api, tenant: str, n: int, **fields: Any) -> None:
    for i in range(n):
        await api.runtime.manager.enqueue(
            EnqueueRequest(type="test.echo", data={"value": i}, tenant_id=tenant, **fields)
        )


async def test_metrics_exposes_every_spec_name_exactly_as_written(api: Api) -> None:
    async with worker_running(api):
        await enqueue(api, TENANT, 3)
        await eventually(lambda: _finished(api, 3), what="three jobs done")
    text = await scrape(api)

    declared = set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
    for name in SPEC_NAMES + EXTRA_NAMES:
        assert name in declared, f"{name} is not exposed as written"
    # The pitfalls: prometheus_client's `_total` suffix and `_created` series.
    assert "_total_total" not in text
    assert "payment_amount_total_cents_total" not in text
    assert "_created" not in text


async def _finished(api: Api, n: int) -> bool:
    return int(api.sql("SELECT count(*) FROM finished_jobs")[0][0]) >= n


async def test_queue_gauges_are_the_database_counts_of_every_tenant(api: Api) -> None:
    await enqueue(api, TENANT, 3)
    await enqueue(api, OTHER_TENANT, 2)
    await enqueue(api, OTHER_TENANT, 4, delay_ms=600_000)

    got = samples(await scrape(api))

    assert got[("queue_size", (("queue", "test"), ("status", "waiting")))] == 5
    assert got[("queue_size", (("queue", "test"), ("status", "delayed")))] == 4
    assert got[("queue_active_jobs", (("queue", "test"),))] == 0
    age = got[("oldest_job_age_seconds", (("queue", "test"),))]
    (oldest,) = api.sql(
        "SELECT extract(epoch FROM now() - min(run_at))::float FROM jobs"
        " WHERE queue = 'test' AND run_at <= now()"
    )[0]
    assert age == pytest.approx(oldest, abs=1.0)
    # Every known queue is there, at zero when it has no jobs.
    assert got[("queue_size", (("queue", "money"), ("status", "waiting")))] == 0
    assert got[("queue_circuit_breaker_state", (("service", "stripe"), ("state", "closed")))] == 1


async def test_metrics_with_a_token_set_refuses_a_scrape_without_it(open_api: OpenApi) -> None:
    token = "scrape-token-0123456789abcdef"
    async with open_api(metrics_token=token) as api:
        missing = await api.client.get("/metrics")
        wrong = await api.client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = await api.client.get("/metrics", headers={"Authorization": f"Bearer {token}"})

    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert "METRICS_TOKEN" in missing.json()["detail"]
    assert wrong.status_code == 401
    assert right.status_code == 200 and "queue_size" in right.text


async def test_metrics_json_shows_a_tenant_admin_only_its_own_queues(api: Api) -> None:
    await enqueue(api, TENANT, 3)
    await enqueue(api, OTHER_TENANT, 2)

    response = await api.client.get("/metrics/json", headers=api.auth("b1", OTHER_TENANT, "admin"))

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["scope"], body["tenant_id"]) == ("tenant", OTHER_TENANT)
    test = next(q for q in body["queues"] if q["queue"] == "test")
    assert test["waiting"] == 2
    # Counters mix every tenant's work, and the wallet is the platform's.
    assert body["process"] is None and body["wallets"] == []
    assert {s["service"] for s in body["outbound"]} >= {"stripe", "smtp"}


async def test_metrics_json_gives_a_platform_admin_every_tenant_and_the_counters(
    api: Api,
) -> None:
    await enqueue(api, TENANT, 3)
    await enqueue(api, OTHER_TENANT, 2)

    platform = await api.client.get("/metrics/json", headers=api.auth("a1", TENANT, "admin"))
    user = await api.client.get("/metrics/json", headers=api.auth("u1", TENANT, "user"))

    body = platform.json()
    assert body["scope"] == "platform"
    assert next(q for q in body["queues"] if q["queue"] == "test")["waiting"] == 5
    assert "queue_jobs_processed" in body["process"]
    # A plain user of the operator tenant is still a tenant caller.
    assert user.json()["scope"] == "tenant"
    assert next(q for q in user.json()["queues"] if q["queue"] == "test")["waiting"] == 3


async def test_metrics_json_needs_a_user(api: Api) -> None:
    response = await api.client.get("/metrics/json")

    assert response.status_code == 401


async def test_an_idempotent_replay_counts_as_a_hit_not_an_enqueue(api: Api) -> None:
    before = samples(await scrape(api))
    for _ in range(3):
        await enqueue(api, TENANT, 1, idempotency_key="same-key")

    after = samples(await scrape(api))

    def delta(name: str) -> float:
        key = (name, (("queue", "test"),))
        return after.get(key, 0) - before.get(key, 0)

    assert delta("queue_jobs_enqueued_total") == 1
    assert delta("queue_idempotency_hits_total") == 2
