"""Every insert path wakes the queue's workers at commit, and only then:
the single keyless statement, the keyed function, the COPY batch, the
multi-row insert, the synchronous producer; never for a delayed job or a
rolled-back transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest

from queue_service.runtime.producer import SyncProducer
from queue_service.runtime.service import Runtime
from tests.support.processors import echo_request as echo
from tests.support.processors import enqueue_then_roll_back

CHANNEL = "queue_service_jobs"


class Hints:
    """A LISTENing connection; ``drain`` returns what arrived (payloads)."""

    def __init__(self, conn: psycopg.AsyncConnection[object]) -> None:
        self.conn = conn

    async def drain(self, wait: float = 0.3) -> list[str]:
        got: list[str] = []
        try:
            async with asyncio.timeout(wait):
                async for n in self.conn.notifies():
                    got.append(n.payload)
        except TimeoutError:
            pass
        return got


@pytest.fixture
async def hints(database_url: str) -> AsyncIterator[Hints]:
    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    try:
        await conn.execute(f"LISTEN {CHANNEL}")
        yield Hints(conn)
    finally:
        await conn.close()


async def test_a_single_job_without_a_key_wakes_its_queue(runtime: Runtime, hints: Hints) -> None:
    await runtime.manager.enqueue(echo("now"))
    assert await hints.drain() == ["test"]


async def test_a_single_job_with_a_key_wakes_its_queue_once(runtime: Runtime, hints: Hints) -> None:
    await runtime.manager.enqueue(echo("k", idempotency_key="wake-1"))
    await runtime.manager.enqueue(echo("k", idempotency_key="wake-1"))  # a replay: no insert
    assert await hints.drain() == ["test"]


async def test_a_delayed_job_wakes_nobody(runtime: Runtime, hints: Hints) -> None:
    await runtime.manager.enqueue(echo("later", delay_ms=60_000))
    await runtime.manager.enqueue_many([echo("later", delay_ms=60_000), echo("l2", delay_ms=1)])
    assert await hints.drain() == []


async def test_a_batch_wakes_its_queue_once(runtime: Runtime, hints: Hints) -> None:
    await runtime.manager.enqueue_many([echo(i) for i in range(50)])  # COPY
    assert await hints.drain() == ["test"]
    await runtime.manager.enqueue_many([echo("a", idempotency_key="b1"), echo("b")])
    assert await hints.drain() == ["test"]


async def test_a_rolled_back_enqueue_wakes_nobody_and_a_committed_one_wakes_at_commit(
    runtime: Runtime, hints: Hints
) -> None:
    await enqueue_then_roll_back(runtime)
    assert await hints.drain() == []

    async with runtime.db.transaction() as conn:
        await runtime.manager.enqueue(echo("kept"), conn=conn)
        assert await hints.drain(0.2) == []  # not before the commit
    assert await hints.drain() == ["test"]


async def test_the_sync_producer_wakes_at_commit(
    runtime: Runtime, hints: Hints, database_url: str
) -> None:
    producer = SyncProducer(runtime.registry)
    with psycopg.connect(database_url, autocommit=True) as conn:
        producer.enqueue(conn, echo("autocommit"))
        assert await hints.drain() == ["test"]
        with conn.transaction():
            producer.enqueue(conn, echo("in a transaction"))
            assert await hints.drain(0.2) == []
        assert await hints.drain() == ["test"]
