"""Synchronous producers enqueue on their own psycopg connection, inside
their own transaction, with the same rules as the async path."""

from __future__ import annotations

import psycopg
import pytest

from queue_service.core.jobs import JobStatus
from queue_service.errors import IdempotencyConflictError, InvalidPayloadError
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.producer import SyncProducer
from queue_service.runtime.service import Runtime
from tests.integration.conftest import WorkerFactory
from tests.support.waiting import eventually


def echo(value: object, key: str | None = None) -> EnqueueRequest:
    return EnqueueRequest(
        type="test.echo", data={"value": value}, tenant_id="t1", idempotency_key=key
    )


@pytest.fixture
def producer(runtime: Runtime) -> SyncProducer:
    return SyncProducer(runtime.registry)


def engine_connection(database_url: str, autocommit: bool = True) -> psycopg.Connection[object]:
    conn = psycopg.connect(database_url, autocommit=autocommit)
    conn.execute("SET ROLE queue_service_engine")  # the role the service's own pool uses
    return conn


async def test_a_job_enqueued_in_a_rolled_back_transaction_does_not_exist(
    runtime: Runtime, producer: SyncProducer, database_url: str
) -> None:
    def enqueue_then_fail(conn: psycopg.Connection[object]) -> None:
        with conn.transaction():
            producer.enqueue(conn, echo("ghost"))
            producer.enqueue_many(conn, [echo(1), echo(2)])
            raise RuntimeError("the business write failed")

    with engine_connection(database_url) as conn:
        with pytest.raises(RuntimeError):
            enqueue_then_fail(conn)
        assert await runtime.store.queue_counts() == {}
        with conn.transaction():
            kept = producer.enqueue(conn, echo("kept"))
    assert kept.created
    assert (await runtime.manager.get(kept.job_id)).status is JobStatus.WAITING


async def test_a_synchronously_enqueued_job_runs(
    runtime: Runtime, producer: SyncProducer, database_url: str, run_worker: WorkerFactory
) -> None:
    with engine_connection(database_url) as conn:
        done = producer.enqueue(conn, echo("hello"))  # autocommit: one statement
    assert done.created
    assert (await runtime.manager.get(done.job_id)).status is JobStatus.WAITING
    run_worker()

    async def completed() -> bool:
        return (await runtime.manager.get(done.job_id)).status is JobStatus.COMPLETED

    await eventually(completed, what="the job to run")


async def test_sync_enqueues_keep_the_idempotency_rules(
    runtime: Runtime, producer: SyncProducer, database_url: str
) -> None:
    with engine_connection(database_url) as conn:
        first = producer.enqueue(conn, echo("pay", key="order-7"))
        again = producer.enqueue(conn, echo("pay", key="order-7"))
        assert (again.job_id, again.created) == (first.job_id, False)
        with pytest.raises(IdempotencyConflictError):
            producer.enqueue(conn, echo("other", key="order-7"))
        batch = producer.enqueue_many(conn, [echo("pay", key="order-7"), echo(3), echo(4)])
        assert batch[0].job_id == first.job_id and not batch[0].created
        assert batch[1].created and batch[2].created
        with pytest.raises(InvalidPayloadError):
            producer.enqueue_many(
                conn, [echo(5), EnqueueRequest(type="test.echo", data={"nope": 1}, tenant_id="t1")]
            )
    assert (await runtime.store.queue_counts("t1"))["test"].waiting == 3
