"""Coalesced commits (decision 0019): single-job enqueues that meet share a
transaction and a commit, and every caller still gets its own answer, only
after that commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from queue_service.errors import EnqueueError, IdempotencyConflictError
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime, open_runtime
from queue_service.store.coalesce import Coalescer
from queue_service.store.enqueue_plan import Enqueued
from tests.integration.conftest import make_settings
from tests.support.commit_sleep import SLEEP_AT_COMMIT, sleeping_backends, until_asleep
from tests.support.processors import PROCESSORS, echo_request

WINDOW = 8


@pytest.fixture
async def coalescing(database_url: str) -> AsyncIterator[Runtime]:
    """A runtime whose windows close on their WINDOW-th job (or after 100 ms)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SLEEP_AT_COMMIT)
    settings = make_settings(
        database_url,
        queue_service_enqueue_coalesce_ms=100,
        queue_service_enqueue_coalesce_max=WINDOW,
    )
    async with open_runtime(settings, database_url, extra_processors=PROCESSORS) as rt:
        yield rt


def coalescer(rt: Runtime) -> Coalescer:
    assert rt.db.coalescer is not None
    return rt.db.coalescer


async def hold_a_slot(rt: Runtime, database_url: str, seconds: float) -> asyncio.Task[Any]:
    """An enqueue in flight for ``seconds``: the next ones wait in a window."""
    held = asyncio.create_task(rt.manager.enqueue(echo_request({"sleep": seconds})))
    await until_asleep(database_url)
    return held


def count_jobs(database_url: str, values: list[Any]) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM jobs WHERE data->'value' = ANY(%s::jsonb[])",
            ([psycopg.types.json.Jsonb(v) for v in values],),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_callers_in_one_window_each_get_their_own_outcome(
    coalescing: Runtime, database_url: str
) -> None:
    rt = coalescing
    earlier = await rt.manager.enqueue(echo_request("paid", idempotency_key="order-1"))
    held = await hold_a_slot(rt, database_url, 0.5)
    commits = coalescer(rt).commits
    window: list[EnqueueRequest] = [
        echo_request("new"),  # created
        echo_request("keyed", idempotency_key="order-2"),  # created
        echo_request("keyed", idempotency_key="order-2"),  # the same: a replay of it
        echo_request("other", idempotency_key="order-2"),  # the same key, another payload
        echo_request("paid", idempotency_key="order-1"),  # a replay of `earlier`
        echo_request("refund", idempotency_key="order-1"),  # a conflict with it
        echo_request("nul", idempotency_key="bad\x00key"),  # PostgreSQL refuses the text
        echo_request("late", delay_ms=60_000),  # created, delayed
    ]
    invalid = EnqueueRequest(type="test.echo", data={"value": 1}, tenant_id="t1", priority=99)
    outcomes = await asyncio.gather(
        *(rt.manager.enqueue(r) for r in [*window, invalid]), return_exceptions=True
    )
    await held
    new, keyed, replayed, clash, replay_earlier, conflict, nul, late, bad = outcomes
    assert isinstance(new, Enqueued) and new.created
    assert isinstance(keyed, Enqueued) and keyed.created
    assert isinstance(replayed, Enqueued) and (replayed.job_id, replayed.created) == (
        keyed.job_id,
        False,
    )
    assert isinstance(clash, IdempotencyConflictError)
    assert clash.existing_job_id == str(keyed.job_id)
    assert isinstance(replay_earlier, Enqueued)
    assert (replay_earlier.job_id, replay_earlier.created) == (earlier.job_id, False)
    assert isinstance(conflict, IdempotencyConflictError)
    assert isinstance(nul, psycopg.DataError)
    assert isinstance(late, Enqueued) and late.created
    assert isinstance(bad, EnqueueError) and "priority" in str(bad)
    # One commit carried the whole window, bad job and all.
    assert coalescer(rt).commits == commits + 2  # the held enqueue's, then the window's
    assert count_jobs(database_url, ["new", "keyed", "late"]) == 3
    assert count_jobs(database_url, ["other", "refund", "nul"]) == 0
    assert (await rt.manager.get(late.job_id)).status == "delayed"


async def test_a_job_is_visible_as_soon_as_its_enqueue_returns(coalescing: Runtime) -> None:
    rt = coalescing
    unseen: list[str] = []

    async def producer(k: int) -> None:
        for i in range(10):
            done = await rt.manager.enqueue(echo_request(f"{k}-{i}"))
            if await rt.store.get_job(done.job_id) is None:
                unseen.append(f"{k}-{i}")

    commits = coalescer(rt).commits
    await asyncio.gather(*(producer(k) for k in range(32)))
    assert unseen == []
    assert coalescer(rt).commits - commits < 320  # they did share commits


async def test_a_failed_commit_fails_every_caller_of_its_window_and_keeps_none(
    coalescing: Runtime, database_url: str
) -> None:
    rt = coalescing
    held = await hold_a_slot(rt, database_url, 0.3)
    [holder] = await sleeping_backends(database_url)
    values: list[Any] = [f"doomed-{i}" for i in range(WINDOW - 1)] + [{"sleep": 30}]
    window = asyncio.gather(
        *(rt.manager.enqueue(echo_request(v)) for v in values), return_exceptions=True
    )
    await held
    committing = await until_asleep(database_url, besides=(holder,))
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (committing[0],))
    outcomes = await window
    assert all(isinstance(o, psycopg.OperationalError) for o in outcomes), outcomes
    assert count_jobs(database_url, values) == 0
    # The pool replaced the connection: the next enqueue works.
    assert (await rt.manager.enqueue(echo_request("after"))).created


async def test_each_commit_sends_one_wake_up(coalescing: Runtime, database_url: str) -> None:
    rt = coalescing
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener:
        await listener.execute("LISTEN queue_service_jobs")
        commits = coalescer(rt).commits
        await asyncio.gather(*(rt.manager.enqueue(echo_request(i)) for i in range(64)))
        made = coalescer(rt).commits - commits
        assert made < 64  # windows of several jobs
        # Every notification sent has arrived once none comes for a second.
        heard = [n.payload async for n in listener.notifies(timeout=1.0)]
    assert heard == ["test"] * made
