"""Row-level security: PostgreSQL itself keeps tenants apart, whatever a
query forgets (0003_tenancy.sql)."""

from __future__ import annotations

import psycopg
import pytest

from queue_service.runtime.manager import EnqueueRequest, JobManager
from queue_service.runtime.service import Runtime
from queue_service.store import Database, Store
from queue_service.store.db import API_ROLE, ENGINE_ROLE
from queue_service.store.enqueue_plan import Enqueued


def echo(tenant: str) -> EnqueueRequest:
    return EnqueueRequest(type="test.echo", data={"value": tenant}, tenant_id=tenant)


async def test_the_api_role_with_no_tenant_set_sees_no_rows(
    runtime: Runtime, database_url: str
) -> None:
    await runtime.manager.enqueue_many([echo("t1"), echo("t2")])
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"SET ROLE {API_ROLE}")
        assert conn.execute("SELECT * FROM jobs").fetchall() == []
        assert conn.execute("SELECT count(*) FROM queue_idempotency_keys").fetchone() == (0,)
        conn.execute("RESET ROLE")
        conn.execute(f"SET ROLE {ENGINE_ROLE}")
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (2,)


@pytest.mark.parametrize("role", [API_ROLE, ENGINE_ROLE])
def test_the_service_roles_are_neither_owner_superuser_nor_bypassrls(
    database_url: str, role: str
) -> None:
    with psycopg.connect(database_url) as conn:
        attrs = conn.execute(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", (role,)
        ).fetchone()
        owned = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = %s",
            (role,),
        ).fetchone()
        unprotected = conn.execute(
            "SELECT relname FROM pg_class WHERE relname = ANY(%s) "
            "AND NOT (relrowsecurity AND relforcerowsecurity)",
            (
                [
                    "jobs",
                    "finished_jobs",
                    "job_archive",
                    "job_events",
                    "dead_letter_jobs",
                    "queue_idempotency_keys",
                    "queue_pauses",
                    "rate_limits",
                ],
            ),
        ).fetchall()
    assert attrs == (False, False)
    assert owned == (0,)
    assert unprotected == []


async def test_a_tenant_transaction_sees_and_writes_only_its_tenant(
    runtime: Runtime, database_url: str
) -> None:
    theirs = await runtime.manager.enqueue(echo("t2"))
    api = Database(database_url, role=API_ROLE, min_size=1, max_size=2)
    await api.open()
    try:
        async with api.tenant_transaction("t1") as scoped:
            store = Store(scoped)
            manager = JobManager(store, runtime.registry)
            mine = await manager.enqueue(echo("t1"))
            assert await store.get_job(mine.job_id) is not None
            # No tenant filter in the query: RLS alone hides the other tenant.
            assert await store.get_job(theirs.job_id) is None
            assert set(await store.queue_counts()) == {"test"}
            assert (await store.queue_counts())["test"].waiting == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with api.tenant_transaction("t1") as scoped:
                await JobManager(Store(scoped), runtime.registry).enqueue(echo("t2"))
        async with api.tenant_transaction("t1") as scoped:
            batch = [echo("t1") for _ in range(5)]
            assert len(await JobManager(Store(scoped), runtime.registry).enqueue_many(batch)) == 5
    finally:
        await api.close()
    assert (await runtime.store.queue_counts("t1"))["test"].waiting == 6


async def test_the_one_statement_insert_is_scoped_to_the_caller_not_the_job(
    runtime: Runtime, database_url: str
) -> None:
    api = Database(database_url, role=API_ROLE, min_size=1, max_size=1)
    await api.open()
    try:
        store = Store(api)
        mine = await store.insert_one_as_tenant(runtime.manager.build(echo("t1")), "t1")
        assert isinstance(mine, Enqueued) and mine.job is not None and mine.job.tenant_id == "t1"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await store.insert_one_as_tenant(runtime.manager.build(echo("t2")), "t1")
        async with api.pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM jobs")
            # The setting ended with the statement's transaction: no tenant, no rows.
            assert await cur.fetchone() == (0,)
    finally:
        await api.close()
    assert (await runtime.store.queue_counts("t1"))["test"].waiting == 1
    assert "t2" not in {j.tenant_id for j in [await runtime.manager.get(mine.job_id)]}
