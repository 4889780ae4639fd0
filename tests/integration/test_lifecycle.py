"""A job's life: enqueue, claim, run, complete, with its history; order,
batches, delays, transactional enqueue, cancel and retry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from queue_service.core.jobs import JobStatus
from queue_service.errors import EnqueueError, InvalidPayloadError, UnknownJobTypeError
from queue_service.processors.registry import UnknownQueueError
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime
from tests.integration.conftest import WorkerFactory
from tests.support.processors import echo_request as echo
from tests.support.processors import enqueue_then_roll_back
from tests.support.waiting import eventually


async def test_a_job_runs_to_completion_and_keeps_its_history(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    done = await runtime.manager.enqueue(echo("hi", created_by="u1", request_id="req-1"))
    assert done.created
    job = await runtime.manager.get(done.job_id)
    assert job.status is JobStatus.WAITING
    assert (job.attempts, job.created_by, job.request_id) == (0, "u1", "req-1")

    run_worker()

    async def completed() -> bool:
        return (await runtime.manager.get(done.job_id)).status is JobStatus.COMPLETED

    await eventually(completed, what="completion")
    job = await runtime.manager.get(done.job_id)
    assert job.result == {"echo": "hi", "attempt": 1}
    assert job.attempts == 1
    assert job.started_at is not None and job.finished_at is not None
    assert job.started_at <= job.finished_at
    events = await runtime.store.job_events(done.job_id)
    assert [(e.event, e.attempt) for e in events] == [("completed", 1)]
    assert events[0].worker_id and events[0].started_at == job.started_at


async def test_claims_take_lower_priority_numbers_first_then_oldest_run_at(
    runtime: Runtime,
) -> None:
    base = datetime.now(UTC) - timedelta(minutes=5)
    low = await runtime.manager.enqueue(echo("low", priority=7, run_at=base))
    late = await runtime.manager.enqueue(
        echo("late", priority=1, run_at=base + timedelta(seconds=2))
    )
    early = await runtime.manager.enqueue(echo("early", priority=1, run_at=base))
    future = await runtime.manager.enqueue(echo("future", priority=1, delay_ms=60_000))
    claimed = await runtime.store.claim("test", ["test.echo"], 10, "w")
    assert [c.id for c in claimed] == [early.job_id, late.job_id, low.job_id]
    assert (await runtime.manager.get(future.job_id)).status is JobStatus.DELAYED


async def test_batch_enqueue_inserts_all_jobs_in_order(runtime: Runtime) -> None:
    done = await runtime.manager.enqueue_many([echo(i) for i in range(250)])
    assert len({d.job_id for d in done}) == 250 and all(d.created for d in done)
    jobs = [await runtime.manager.get(d.job_id) for d in done[:3]]
    assert [j.data["value"] for j in jobs] == [0, 1, 2]
    counts = await runtime.store.queue_counts("t1")
    assert counts["test"].waiting == 250
    # Same priority, same run_at: they are claimed in the order given.
    claimed = await runtime.store.claim("test", ["test.echo"], 250, "w")
    assert [c.id for c in claimed] == [d.job_id for d in done]


async def test_a_batch_with_one_invalid_job_writes_nothing(runtime: Runtime) -> None:
    bad = EnqueueRequest(type="test.echo", data={"nope": 1}, tenant_id="t1")
    with pytest.raises(InvalidPayloadError, match="nope"):
        await runtime.manager.enqueue_many([echo(1), bad])
    assert await runtime.store.queue_counts("t1") == {}


async def test_transactional_enqueue_rolled_back_leaves_no_job(runtime: Runtime) -> None:
    await enqueue_then_roll_back(runtime)
    assert await runtime.store.queue_counts() == {}
    async with runtime.db.transaction() as conn:
        kept = await runtime.manager.enqueue(echo("kept"), conn=conn)
    assert (await runtime.manager.get(kept.job_id)).status is JobStatus.WAITING


async def test_several_batches_in_one_transaction_each_go_in_once(runtime: Runtime) -> None:
    """Each batch is staged and moved in turn; none is moved twice."""
    async with runtime.db.transaction() as conn:
        first = await runtime.manager.enqueue_many([echo(i) for i in range(30)], conn=conn)
        second = await runtime.manager.enqueue_many([echo(i) for i in range(20)], conn=conn)
    await runtime.manager.enqueue_many([echo(i) for i in range(10)])  # a fresh transaction
    assert (await runtime.store.queue_counts("t1"))["test"].waiting == 60
    ids = {d.job_id for d in first + second}
    assert len(ids) == 50 and all(d.created for d in first + second)


@pytest.mark.parametrize("in_transaction", [False, True], ids=["insert-lane", "caller-tx"])
async def test_batch_text_survives_copy_escaping(runtime: Runtime, in_transaction: bool) -> None:
    """Tabs, newlines, backslashes and non-ASCII in every text field of a COPY:
    alone a batch goes by asyncpg's binary COPY (the insert lane), inside a
    caller's transaction by psycopg's text COPY."""
    tricky = "tab\there\nnew\\line\r\u00e9\u4e2d \\N \\."
    requests = [
        EnqueueRequest(
            type="test.echo",
            data={"value": {"k\\": ["\n", tricky], "s": tricky}},
            tenant_id="t1",
            created_by=tricky,
            request_id="r\t1",
            trace_context={"traceparent": tricky},
        )
        for _ in range(3)
    ]
    if in_transaction:
        async with runtime.db.transaction() as conn:
            done = await runtime.manager.enqueue_many(requests, conn=conn)
    else:
        done = await runtime.manager.enqueue_many(requests)
        assert runtime.db.lane is not None and runtime.db.lane.connections == 1
    job = await runtime.manager.get(done[0].job_id)
    assert job.data == {"value": {"k\\": ["\n", tricky], "s": tricky}}
    assert (job.created_by, job.request_id) == (tricky, "r\t1")
    assert len({d.job_id for d in done}) == 3
    async with runtime.db.connection() as conn:
        ids = [d.job_id for d in done]
        cur = await conn.execute(
            "SELECT DISTINCT trace_context FROM jobs WHERE id = ANY(%s)", (ids,)
        )
        assert await cur.fetchall() == [({"traceparent": tricky},)]


@pytest.mark.parametrize(
    ("request_", "error", "message"),
    [
        (
            EnqueueRequest(type="test.ecko", data={}, tenant_id="t"),
            UnknownJobTypeError,
            "did you mean 'test.echo'",
        ),
        (
            EnqueueRequest(type="test.echo", data={}, tenant_id="t", queue="tset"),
            UnknownQueueError,
            "did you mean 'test'",
        ),
        (
            EnqueueRequest(type="test.echo", data={}, tenant_id="t", queue="background"),
            EnqueueError,
            "runs on queue 'test'",
        ),
        (
            EnqueueRequest(type="test.fail", data={"mode": 3}, tenant_id="t"),
            InvalidPayloadError,
            "data.mode",
        ),
        (
            EnqueueRequest(type="test.echo", data={}, tenant_id="t", priority=0),
            EnqueueError,
            "priority",
        ),
        (
            EnqueueRequest(
                type="test.echo", data={}, tenant_id="t", delay_ms=5, run_at=datetime.now(UTC)
            ),
            EnqueueError,
            "not both",
        ),
        (
            EnqueueRequest(type="test.echo", data={"value": "a\x00b"}, tenant_id="t"),
            InvalidPayloadError,
            "NUL",
        ),
        (
            EnqueueRequest(type="test.echo", data={}, tenant_id="t", max_attempts=0),
            EnqueueError,
            "max_attempts",
        ),
    ],
)
async def test_bad_enqueues_are_refused_with_a_clear_message(
    runtime: Runtime, request_: EnqueueRequest, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await runtime.manager.enqueue(request_)
    assert await runtime.store.queue_counts() == {}


async def test_cancel_a_waiting_job_and_retry_it(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    done = await runtime.manager.enqueue(echo("x", delay_ms=60_000))
    assert await runtime.manager.cancel(done.job_id, "t1", "changed my mind") == "cancelled"
    job = await runtime.manager.get(done.job_id)
    assert (job.status, job.last_error) == (JobStatus.CANCELLED, "changed my mind")
    with pytest.raises(Exception, match="only waiting"):
        await runtime.manager.cancel(done.job_id, "t1", "again")

    await runtime.manager.retry(done.job_id, "t1", "admin")
    run_worker()

    async def completed() -> bool:
        return (await runtime.manager.get(done.job_id)).status is JobStatus.COMPLETED

    await eventually(completed, what="the retried job to complete")
    events = [e.event for e in await runtime.store.job_events(done.job_id)]
    assert events == ["cancelled", "retried", "completed"]


async def test_another_tenant_cannot_cancel_or_see_a_job(runtime: Runtime) -> None:
    done = await runtime.manager.enqueue(echo("mine"))
    assert await runtime.store.get_job(done.job_id, "t2") is None
    with pytest.raises(Exception, match="no job"):
        await runtime.manager.cancel(done.job_id, "t2", "not yours")
    assert (await runtime.manager.get(done.job_id)).status is JobStatus.WAITING


async def test_a_follow_up_enqueued_in_the_completing_transaction_exists_only_if_it_commits(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    first = await runtime.manager.enqueue(
        EnqueueRequest(type="test.chain", data={"fail_after_enqueue": True}, tenant_id="t1")
    )
    run_worker()

    async def completed() -> bool:
        return (await runtime.manager.get(first.job_id)).status is JobStatus.COMPLETED

    await eventually(completed, what="the chain job")

    # Attempt 1 enqueued then failed: its follow-up rolled back with it.
    # Attempt 2 committed: exactly one follow-up exists.
    async def one_follow_up() -> bool:
        counts = await runtime.store.queue_counts("t1")
        return counts["test"].completed == 2

    await eventually(one_follow_up, what="exactly one follow-up")
    counts = (await runtime.store.queue_counts("t1"))["test"]
    assert counts.completed == 2 and counts.waiting == counts.active == 0


async def test_a_job_type_never_runs_more_than_its_own_concurrency(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    from tests.support.processors import CAPPED_RUNNING

    CAPPED_RUNNING.update(now=0, max=0)
    await runtime.manager.enqueue_many(
        [
            EnqueueRequest(type="test.capped", data={"seconds": 0.05}, tenant_id="t1")
            for _ in range(12)
        ]
    )
    run_worker()

    async def all_done() -> bool:
        return (await runtime.store.queue_counts("t1"))["test"].completed == 12

    await eventually(all_done, what="12 capped jobs")
    assert CAPPED_RUNNING["max"] == 2


async def test_a_result_postgres_cannot_store_does_not_block_other_acknowledgements(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    bad = await runtime.manager.enqueue(EnqueueRequest(type="test.nul", data={}, tenant_id="t1"))
    good = await runtime.manager.enqueue_many([echo(i) for i in range(20)])
    run_worker()

    async def all_done() -> bool:
        return (await runtime.store.queue_counts("t1"))["test"].completed == 21

    await eventually(all_done, what="21 completions")
    job = await runtime.manager.get(bad.job_id)
    assert (job.status, job.result) == (JobStatus.COMPLETED, None)
    assert (await runtime.manager.get(good[0].job_id)).result == {"echo": 0, "attempt": 1}
