"""Idempotency keys (SPEC §4): one job per key and payload, a distinct error
for another payload, scoped per tenant, expiring."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from queue_service.errors import IdempotencyConflictError
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime


def keyed(value: object, key: str = "order-42", tenant: str = "t1") -> EnqueueRequest:
    return EnqueueRequest(
        type="test.echo", data={"value": value}, tenant_id=tenant, idempotency_key=key
    )


async def test_a_thousand_concurrent_identical_enqueues_make_exactly_one_job(
    runtime: Runtime, database_url: str
) -> None:
    async with runtime.db.pool.connection():  # warm the pool before the stampede
        pass
    results = await asyncio.gather(*(runtime.manager.enqueue(keyed("pay")) for _ in range(1000)))
    ids = {r.job_id for r in results}
    assert len(ids) == 1
    assert sum(r.created for r in results) == 1
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM jobs").fetchone()
    assert row == (1,)


async def test_the_same_key_with_the_same_payload_returns_the_existing_job(
    runtime: Runtime,
) -> None:
    first = await runtime.manager.enqueue(keyed("pay"))
    again = await runtime.manager.enqueue(keyed("pay"))
    assert (again.job_id, again.created) == (first.job_id, False)


async def test_the_same_key_with_another_payload_is_a_conflict_and_writes_nothing(
    runtime: Runtime,
) -> None:
    first = await runtime.manager.enqueue(keyed("pay 10"))
    with pytest.raises(IdempotencyConflictError) as info:
        await runtime.manager.enqueue(keyed("pay 20"))
    assert info.value.existing_job_id == str(first.job_id)
    assert (await runtime.store.queue_counts("t1"))["test"].waiting == 1


async def test_a_batch_reusing_a_key_for_another_payload_writes_nothing(
    runtime: Runtime,
) -> None:
    await runtime.manager.enqueue(keyed("a", key="k1"))
    with pytest.raises(IdempotencyConflictError):
        await runtime.manager.enqueue_many([keyed("new", key="k2"), keyed("b", key="k1")])
    with pytest.raises(IdempotencyConflictError):
        await runtime.manager.enqueue_many([keyed("x", key="k3"), keyed("y", key="k3")])
    assert (await runtime.store.queue_counts("t1"))["test"].waiting == 1


async def test_a_batch_repeating_a_key_with_the_same_payload_makes_one_job(
    runtime: Runtime,
) -> None:
    done = await runtime.manager.enqueue_many([keyed("a"), keyed("a"), keyed("b", key="k9")])
    assert done[0].job_id == done[1].job_id and done[0].created and not done[1].created
    assert (await runtime.store.queue_counts("t1"))["test"].waiting == 2


async def test_keys_are_scoped_to_the_tenant(runtime: Runtime) -> None:
    mine = await runtime.manager.enqueue(keyed("pay", tenant="t1"))
    theirs = await runtime.manager.enqueue(keyed("pay", tenant="t2"))
    assert mine.job_id != theirs.job_id and mine.created and theirs.created


async def test_an_expired_key_is_taken_over_by_a_new_job(
    runtime: Runtime, database_url: str
) -> None:
    first = await runtime.manager.enqueue(keyed("pay"))
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Age the key as its TTL would: the database clock decides expiry.
        conn.execute("UPDATE queue_idempotency_keys SET expires_at = now() - interval '1 s'")
    second = await runtime.manager.enqueue(keyed("another payload is fine now"))
    assert second.created and second.job_id != first.job_id
    assert await runtime.store.purge_expired_keys() == 0  # the live key stays
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE queue_idempotency_keys SET expires_at = now() - interval '1 s'")
    assert await runtime.store.purge_expired_keys() == 1


async def test_keys_live_for_the_job_types_ttl(runtime: Runtime, database_url: str) -> None:
    await runtime.manager.enqueue(keyed("pay"))
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM expires_at - created_at) FROM queue_idempotency_keys"
        ).fetchone()
    assert row is not None and round(float(row[0])) == 86_400
