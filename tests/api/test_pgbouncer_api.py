"""The HTTP API behind a real PgBouncer in transaction mode: DATABASE_URL through it
(QUEUE_SERVICE_PGBOUNCER=true), DATABASE_LISTEN_URL direct. Row-level security holds:
the API's role and the tenant are set per transaction, never per session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from queue_service.runtime.worker import Worker
from queue_service.store.db import API_ROLE
from tests.api.conftest import OTHER_TENANT, TENANT, Api, OpenApi
from tests.support.waiting import eventually

ECHO = {"type": "test.echo", "data": {"value": "hello"}}


@pytest.fixture
async def bounced_api(
    pgbouncer_url: str, database_url: str, open_api: OpenApi
) -> AsyncIterator[Api]:
    async with open_api(
        pgbouncer_url, database_listen_url=database_url, queue_service_pgbouncer=True
    ) as api:
        yield api


def leave_role_behind(pgbouncer_url: str, role: str | None) -> None:
    """A client that SETs a role (or RESETs it) on whatever server connection it got."""
    with psycopg.connect(pgbouncer_url, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(f"SET ROLE {role}" if role else "RESET ROLE")


async def post(api: Api, body: dict[str, Any], tenant: str = TENANT, **headers: str) -> Any:
    return await api.client.post(
        "/jobs", json=body, headers={**api.auth("u1", tenant, "user"), **headers}
    )


async def test_the_api_pool_acts_as_the_api_role_with_the_tenant_of_the_request(
    bounced_api: Api, pgbouncer_url: str
) -> None:
    for other in (None, "queue_service_engine", None):
        leave_role_behind(pgbouncer_url, other)  # a superuser would bypass row-level security
        async with (
            bounced_api.state.db.tenant_transaction(TENANT) as bound,
            bound.connection() as conn,
        ):
            cur = await conn.execute(
                "SELECT current_user, current_setting('queue_service.tenant_id', true)"
            )
            assert await cur.fetchone() == (API_ROLE, TENANT)


async def test_post_and_get_jobs_with_row_level_security(
    bounced_api: Api, pgbouncer_url: str
) -> None:
    api = bounced_api
    created = await post(api, {**ECHO, "idempotency_key": "k1"})
    assert created.status_code == 201, created.text
    job = created.json()
    replay = await post(api, {**ECHO, "idempotency_key": "k1"})
    assert (replay.status_code, replay.json()["id"]) == (200, job["id"])
    conflict = await post(api, {**ECHO, "data": {"value": "other"}, "idempotency_key": "k1"})
    assert conflict.status_code == 409, conflict.text
    batch = await api.client.post(
        "/jobs/batch",
        json={"jobs": [{"type": "test.echo", "data": {"value": i}} for i in range(20)]},
        headers=api.auth("a1", TENANT, "admin"),
    )
    assert batch.status_code == 201, batch.text

    for other in (None, "queue_service_engine"):
        leave_role_behind(pgbouncer_url, other)
        mine = await api.client.get(f"/jobs/{job['id']}", headers=api.auth("u1", TENANT, "user"))
        assert (mine.status_code, mine.json()["id"]) == (200, job["id"])
        theirs = await api.client.get(
            f"/jobs/{job['id']}", headers=api.auth("boss", OTHER_TENANT, "admin")
        )
        assert theirs.status_code == 404, theirs.text
    assert api.job_count(TENANT) == 21 and api.job_count(OTHER_TENANT) == 0


async def test_a_job_posted_through_pgbouncer_is_run_by_a_worker_woken_directly(
    bounced_api: Api,
) -> None:
    api = bounced_api
    runtime = api.runtime
    assert runtime.listen_conninfo == api.database_url
    worker = Worker(
        runtime.manager,
        [runtime.registry.queue("test")],
        deps=runtime.deps,
        listen_conninfo=runtime.listen_conninfo,
        poll_interval=30,  # only the wake-up on the direct URL makes this quick
        grace_seconds=2,
    )
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(worker.run(stop, started))
    try:
        await asyncio.wait_for(started.wait(), 10)
        job = (await post(api, ECHO)).json()

        async def completed() -> bool:
            got = await api.client.get(f"/jobs/{job['id']}", headers=api.auth("u1", TENANT, "user"))
            return bool(got.json()["status"] == "completed")

        await eventually(completed, timeout=10, what="the posted job ran")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
