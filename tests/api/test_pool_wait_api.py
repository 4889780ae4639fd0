"""The API's wait for a pooled connection (QUEUE_SERVICE_API_POOL_TIMEOUT_SECONDS,
decision 0029): when every connection stays busy for the whole wait, the
request is answered 503 problem+json with Retry-After, naming the setting
and the pool's size, and nothing is written for it."""

from __future__ import annotations

import asyncio
import functools
import time

import httpx
import psycopg

from tests.api.conftest import TENANT, OpenApi
from tests.support.waiting import eventually

POOL_SIZE = 2  # the smallest QUEUE_SERVICE_POOL_SIZE allowed
WAIT_SECONDS = 0.2


async def test_an_enqueue_that_finds_the_pool_busy_for_the_whole_wait_is_answered_503(
    open_api: OpenApi,
) -> None:
    async with open_api(
        queue_service_pool_size=POOL_SIZE, queue_service_api_pool_timeout_seconds=WAIT_SECONDS
    ) as api:
        user = api.auth("u1", TENANT, "user")
        admin = api.auth("a1", TENANT, "admin")
        # Also opens u1's enqueue rate-limit window, so the request under test
        # needs the pool only for its insert.
        first = await api.client.post(
            "/jobs", json={"type": "test.echo", "data": {"value": "held"}}, headers=user
        )
        assert first.status_code == 201, first.text
        job_id = first.json()["id"]

        async def lock_waiters_at_least(wanted: int) -> bool:
            rows = api.sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'queue-service api' AND wait_event_type = 'Lock'"
            )
            return int(rows[0][0]) >= wanted

        # Every connection of the API's pool held by a cancel that waits on
        # the job's row, which a separate session keeps locked.
        with psycopg.connect(api.database_url) as locker:
            locker.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
            cancels: list[asyncio.Task[httpx.Response]] = []
            for held in range(1, POOL_SIZE + 1):
                cancels.append(
                    asyncio.create_task(api.client.delete(f"/jobs/{job_id}", headers=admin))
                )
                await eventually(
                    functools.partial(lock_waiters_at_least, held),
                    what=f"{held} API connection(s) waiting on the job's row lock",
                )

            started = time.monotonic()
            refused = await api.client.post(
                "/jobs",
                json={
                    "type": "test.echo",
                    "data": {"value": "no connection for me"},
                    "idempotency_key": "pool-wait-refused",
                },
                headers=user,
            )
            waited = time.monotonic() - started
            assert all(not c.done() for c in cancels)  # the pool stayed busy throughout
            locker.rollback()

        answered = await asyncio.gather(*cancels)

    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["Retry-After"] == "2"
    detail = refused.json()["detail"]
    assert "within 0.2 s (QUEUE_SERVICE_API_POOL_TIMEOUT_SECONDS)" in detail, detail
    assert f"all {POOL_SIZE} connections" in detail and "QUEUE_SERVICE_POOL_SIZE" in detail, detail
    # The setting's wait, not the 5 s default: well before 5 s, not before 0.2 s.
    assert WAIT_SECONDS * 0.9 <= waited < 2.0, waited
    # The held requests went on once the lock was released: one cancelled the job.
    assert sorted(r.status_code for r in answered) == [200, 409], [r.text for r in answered]
    assert api.job_count() == 1  # only the first job
    assert api.sql(
        "SELECT count(*) FROM queue_idempotency_keys WHERE key = 'pool-wait-refused'"
    ) == [(0,)]
