"""/rate-limits for outbound services: the shared bucket, the emergency stop
and the breaker through HTTP, as the workers' gate sees them."""

from __future__ import annotations

import time
from typing import Any

import pytest

from queue_service.errors import RetryableError, Snooze
from tests.api.conftest import OTHER_TENANT, TENANT, Api


async def get_status(api: Api, key: str) -> dict[str, Any]:
    response = await api.client.get(
        f"/rate-limits/status/{key}", headers=api.auth("a1", TENANT, "admin")
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_unused_service_shows_its_configured_bucket_full_and_closed(api: Api) -> None:
    stripe = await get_status(api, "stripe")

    assert stripe["kind"] == "outbound"
    assert (stripe["size"], stripe["refill_per_second"], stripe["max_in_flight"]) == (25, 5, 10)
    assert (stripe["tokens"], stripe["in_flight"], stripe["stopped"]) == (25, 0, False)
    assert stripe["breaker"]["state"] == "closed"


async def test_status_shows_tokens_taken_and_calls_in_flight_by_workers(api: Api) -> None:
    gate = api.runtime.deps.gate
    started = time.monotonic()
    async with gate.slot("solana", "job-1"), gate.slot("solana", "job-2"):
        solana = await get_status(api, "solana")
    elapsed = time.monotonic() - started

    assert solana["in_flight"] == 2
    # Two of ten tokens taken, refilled at 2/s since (BUCKETS["solana"]).
    assert 8 <= solana["tokens"] <= 8 + 2 * elapsed
    assert (await get_status(api, "solana"))["in_flight"] == 0


async def test_an_emergency_stop_through_the_api_snoozes_calls_until_a_reset(api: Api) -> None:
    admin = api.auth("ops", TENANT, "admin")
    gate = api.runtime.deps.gate

    stopped = await api.client.post(
        "/rate-limits/stop/smtp", json={"reason": "relay blocklisted us"}, headers=admin
    )

    assert stopped.status_code == 200, stopped.text
    body = stopped.json()
    assert body["stopped"] is True and body["stop_reason"] == "relay blocklisted us"
    assert body["stopped_by"] == f"ops (tenant {TENANT})"
    with pytest.raises(Snooze, match="emergency stop by ops"):
        async with gate.slot("smtp", "job-1"):
            pass

    reset = await api.client.post("/rate-limits/reset/smtp", headers=admin)

    assert reset.status_code == 200
    assert reset.json()["stopped"] is False
    async with gate.slot("smtp", "job-1"):
        pass


async def test_a_reset_refills_the_bucket_and_closes_an_open_breaker(api: Api) -> None:
    gate = api.runtime.deps.gate
    failures = api.runtime.settings.queue_service_breaker_failures
    for _ in range(failures):
        with pytest.raises(RetryableError):
            async with gate.slot("twilio", "job"):
                raise RetryableError("twilio 503")
    opened = await get_status(api, "twilio")
    assert opened["breaker"]["state"] == "open"
    assert opened["breaker"]["consecutive_failures"] == failures
    assert opened["breaker"]["last_failure"] == "twilio 503"
    assert opened["breaker"]["half_open_at"] is not None

    reset = await api.client.post(
        "/rate-limits/reset/twilio", headers=api.auth("a1", TENANT, "admin")
    )

    assert reset.json()["breaker"]["state"] == "closed"
    assert reset.json()["tokens"] == reset.json()["size"]
    async with gate.slot("twilio", "job"):
        pass


async def test_only_outbound_services_can_be_stopped_and_unknown_keys_are_404(api: Api) -> None:
    admin = api.auth("a1", TENANT, "admin")
    for key in ("read", "nope"):
        response = await api.client.post(f"/rate-limits/stop/{key}", headers=admin)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert "services are" in response.json()["detail"]
    unknown = await api.client.get("/rate-limits/status/nope", headers=admin)
    assert "an outbound service (internal, smtp, solana, stripe" in unknown.json()["detail"]


async def test_a_non_admin_cannot_stop_a_service(api: Api) -> None:
    response = await api.client.post(
        "/rate-limits/stop/stripe", headers=api.auth("u1", TENANT, "user")
    )
    assert response.status_code == 403
    assert (await get_status(api, "stripe"))["stopped"] is False


async def test_only_a_platform_operator_may_stop_or_reset_a_bucket_every_tenant_shares(
    api: Api,
) -> None:
    other_admin = api.auth("a9", OTHER_TENANT, "admin")
    for path in ("/rate-limits/stop/stripe", "/rate-limits/reset/stripe"):
        response = await api.client.post(path, headers=other_admin)
        assert response.status_code == 403, response.text
        assert "QUEUE_SERVICE_PLATFORM_OPERATOR_TENANTS" in response.json()["detail"]
    status = await api.client.get("/rate-limits/status/stripe", headers=other_admin)
    assert status.status_code == 200 and status.json()["stopped"] is False
