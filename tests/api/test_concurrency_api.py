"""Idempotency under load through the real HTTP server (SPEC §4): 1,000
concurrent identical enqueues with one key make exactly one job."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest

from tests.api.conftest import TENANT, Api

REQUESTS = 1000
# Requests in flight at once: five per connection of the API's pool (10). At
# 100 (ten per connection) a loaded CI machine kept some waiting past the
# pool's 5 s (QUEUE_SERVICE_API_POOL_TIMEOUT_SECONDS) and answered 503 (4 of 1,000),
# a load limit, not a lost or doubled job; what this test guards is one job
# for one key (decision 0029 measured the waits).
POOL = 50


@pytest.mark.slow
async def test_1000_concurrent_identical_enqueues_make_exactly_one_job(live_api: Api) -> None:
    body = {
        "type": "test.echo",
        "data": {"value": "charge order 42 once"},
        "idempotency_key": "order-42-charge",
    }
    headers = live_api.auth("u1", TENANT, "user")
    # Idle connections dropped after 1 s. The server keeps them 75 s
    # (QUEUE_SERVICE_HTTP_KEEP_ALIVE_SECONDS); at uvicorn's own 5 s, the same as
    # httpx's expiry, a request sent on a connection the server was closing
    # failed with ReadError (seen under load).
    limits = httpx.Limits(
        max_connections=POOL, max_keepalive_connections=POOL, keepalive_expiry=1.0
    )
    started = time.monotonic()
    async with httpx.AsyncClient(
        base_url=live_api.base_url, limits=limits, timeout=httpx.Timeout(60, pool=120)
    ) as client:
        # At most POOL requests in flight, as the connection limit allows: the
        # rest wait here, not in httpcore's queue, whose per-request scan of
        # every queued request cost the shared event loop more CPU than the
        # server (profiled: 85 of 141 s), starving it until keep-alive
        # connections timed out under the client (ReadError).
        in_flight = asyncio.Semaphore(POOL)

        async def post() -> httpx.Response:
            async with in_flight:
                return await client.post("/jobs", json=body, headers=headers)

        responses = await asyncio.gather(*(post() for _ in range(REQUESTS)))
    elapsed = time.monotonic() - started

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 200: REQUESTS - 1}, (
        statuses,
        [r.text for r in responses if r.status_code not in (200, 201)][:3],
    )
    assert {r.json()["id"] for r in responses} == {responses[0].json()["id"]}
    assert all(
        r.headers.get("Idempotent-Replayed") == "true" for r in responses if r.status_code == 200
    )
    assert len({r.headers["x-request-id"] for r in responses}) == REQUESTS
    assert live_api.job_count() == 1
    assert live_api.key_count() == 1
    print(f"{REQUESTS} requests in {elapsed:.1f} s")
