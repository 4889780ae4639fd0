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
POOL = 100


@pytest.mark.slow
async def test_1000_concurrent_identical_enqueues_make_exactly_one_job(live_api: Api) -> None:
    body = {
        "type": "test.echo",
        "data": {"value": "charge order 42 once"},
        "idempotency_key": "order-42-charge",
    }
    headers = live_api.auth("u1", TENANT, "user")
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    started = time.monotonic()
    async with httpx.AsyncClient(
        base_url=live_api.base_url, limits=limits, timeout=httpx.Timeout(60, pool=120)
    ) as client:
        responses = await asyncio.gather(
            *(client.post("/jobs", json=body, headers=headers) for _ in range(REQUESTS))
        )
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
