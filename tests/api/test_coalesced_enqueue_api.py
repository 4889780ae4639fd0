"""POST /jobs with coalesced commits (decision 0019): requests that share a
transaction still get their own answers: 201, 200 replay, 409, 422."""

from __future__ import annotations

import asyncio

import httpx
import psycopg

from tests.api.conftest import OTHER_TENANT, TENANT, OpenApi
from tests.support.commit_sleep import SLEEP_AT_COMMIT, until_asleep


async def test_requests_in_one_window_get_their_own_answers(
    open_api: OpenApi, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SLEEP_AT_COMMIT)
    # A window of 4 jobs: it commits on its fourth, whatever is in flight.
    async with open_api(
        queue_service_enqueue_coalesce_ms=100, queue_service_enqueue_coalesce_max=4
    ) as api:
        coalescer = api.state.db.coalescer
        assert coalescer is not None
        mine, theirs = api.auth("u1", TENANT, "user"), api.auth("u9", OTHER_TENANT, "user")

        async def post(headers: dict[str, str], value: object, **body: object) -> httpx.Response:
            job = {"type": "test.echo", "data": {"value": value}, **body}
            return await api.client.post("/jobs", json=job, headers=headers)

        earlier = await post(mine, "paid", idempotency_key="order-1")
        assert earlier.status_code == 201
        held = asyncio.create_task(post(mine, {"sleep": 0.5}))  # an insert in flight
        await until_asleep(database_url)
        commits = coalescer.commits
        new, replay, conflict, other, invalid = await asyncio.gather(
            post(mine, "new"),
            post(mine, "paid", idempotency_key="order-1"),
            post(mine, "refund", idempotency_key="order-1"),
            post(theirs, "theirs", idempotency_key="order-1"),  # another tenant's key space
            post(mine, "bad", priority=99),
        )
        assert (await held).status_code == 201
        assert new.status_code == 201 and new.json()["data"] == {"value": "new"}
        assert replay.status_code == 200
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json()["id"] == earlier.json()["id"]
        assert conflict.status_code == 409
        assert conflict.headers["content-type"].startswith("application/problem+json")
        assert other.status_code == 201 and other.json()["tenant_id"] == OTHER_TENANT
        assert invalid.status_code == 422
        assert coalescer.commits == commits + 2  # the held request's, then the window's
        assert api.job_count(TENANT) == 3  # paid, the held one, new
        assert api.job_count(OTHER_TENANT) == 1
