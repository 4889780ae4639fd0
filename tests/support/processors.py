"""Job types the tests register, through the same plug-in mechanism a team
would use (QUEUE_SERVICE_PROCESSORS=tests.support.processors:PROCESSORS)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from queue_service.core.catalog import QueueConfig
from queue_service.core.retry import RetryPolicy
from queue_service.errors import PermanentError, RetryableError, Snooze
from queue_service.processors.base import Payload, processor
from queue_service.processors.context import JobContext
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime

TEST_QUEUE = QueueConfig("test", concurrency=5)
FAST_RETRY = RetryPolicy(3, "fixed", 0.05, 0.05, jitter=False)

# The ledger: one row per *completed* effect, written in the transaction that
# completes the job, so exactly-once shows as exactly one row.
LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS test_ledger (
    job_id uuid NOT NULL,
    attempt integer NOT NULL,
    worker_id text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


class EchoPayload(Payload):
    value: Any = None


class FailPayload(Payload):
    mode: str  # "retryable" | "permanent" | "crash" | "flaky"
    succeed_on: int = 0
    message: str | None = None  # the error's text instead of the default
    retry_in: float | None = None  # a retryable error's own delay (seconds)


class SleepPayload(Payload):
    seconds: float
    tag: str | None = None
    # Attempts after the first sleep this long instead (a job that must still
    # be running when a slow machine gets round to killing its worker).
    then_seconds: float | None = None


@processor("test.echo", payload=EchoPayload, queue="test")
async def echo(ctx: JobContext, p: EchoPayload) -> dict[str, Any]:
    return {"echo": p.value, "attempt": ctx.attempt}


@processor("test.fail", payload=FailPayload, queue="test", retry=FAST_RETRY)
async def fail(ctx: JobContext, p: FailPayload) -> dict[str, int]:
    if p.mode == "flaky" and ctx.attempt >= p.succeed_on:
        return {"succeeded_on": ctx.attempt}
    if p.mode == "permanent":
        raise PermanentError(p.message or "card declined", reason="card_declined")
    if p.mode == "crash":
        raise ZeroDivisionError("a bug in the handler")
    raise RetryableError(
        p.message or f"upstream 503 on attempt {ctx.attempt}", delay_seconds=p.retry_in
    )


@processor(
    "test.sleep",
    payload=SleepPayload,
    queue="test",
    lease_seconds=2,
    timeout_seconds=30,
    max_stalled=3,
    retry=FAST_RETRY,
)
async def sleep_then_record(ctx: JobContext, p: SleepPayload) -> None:
    """Sleep, then record the effect and complete in one transaction."""
    later = p.then_seconds is not None and ctx.attempt > 1
    await asyncio.sleep(p.then_seconds if later and p.then_seconds is not None else p.seconds)
    async with ctx.transaction() as tx:
        await tx.execute(
            "INSERT INTO test_ledger (job_id, attempt, worker_id) VALUES (%(id)s, %(a)s, %(w)s)",
            {"id": ctx.job.id, "a": ctx.attempt, "w": ctx.worker_id},
        )


@processor(
    "test.timeout",
    payload=SleepPayload,
    queue="test",
    timeout_seconds=0.3,
    retry=RetryPolicy(2, "fixed", 0.05, 0.05, jitter=False),
)
async def too_slow(ctx: JobContext, p: SleepPayload) -> None:
    await asyncio.sleep(p.seconds)


class ChainPayload(Payload):
    fail_after_enqueue: bool = False


@processor("test.chain", payload=ChainPayload, queue="test", retry=FAST_RETRY)
async def chain(ctx: JobContext, p: ChainPayload) -> None:
    """Enqueue a follow-up in the completing transaction (JobCompleteTx)."""
    async with ctx.transaction() as tx:
        await tx.enqueue(
            EnqueueRequest(
                type="test.echo", data={"value": "follow-up"}, tenant_id=ctx.job.tenant_id
            )
        )
        if p.fail_after_enqueue and ctx.attempt == 1:
            raise RetryableError("failed after enqueueing the follow-up")


CAPPED_RUNNING = {"now": 0, "max": 0}


@processor("test.capped", payload=SleepPayload, queue="test", concurrency=2)
async def capped(ctx: JobContext, p: SleepPayload) -> None:
    CAPPED_RUNNING["now"] += 1
    CAPPED_RUNNING["max"] = max(CAPPED_RUNNING["max"], CAPPED_RUNNING["now"])
    try:
        await asyncio.sleep(p.seconds)
    finally:
        CAPPED_RUNNING["now"] -= 1


@processor("test.nul", payload=EchoPayload, queue="test")
async def nul_result(ctx: JobContext, p: EchoPayload) -> str:
    """A result PostgreSQL's jsonb refuses (a NUL character)."""
    return "a\x00b"


class SnoozePayload(Payload):
    times: int
    seconds: float = 0.05


@processor("test.snooze", payload=SnoozePayload, queue="test", retry=RetryPolicy(1, "fixed", 1, 1))
async def snooze_then_finish(ctx: JobContext, p: SnoozePayload) -> dict[str, int]:
    """Snooze ``times`` times (as an empty rate-limit bucket would), then finish;
    one attempt allowed, so a snooze that used an attempt would fail the job."""
    history = await ctx.deps.store.job_events(ctx.job.id)
    snoozes = sum(e.event == "snoozed" for e in history)
    if snoozes < p.times:
        raise Snooze(p.seconds, f"bucket empty ({snoozes + 1} of {p.times})")
    return {"snoozes": snoozes, "attempt": ctx.attempt}


PROCESSORS = [
    TEST_QUEUE,
    echo,
    fail,
    sleep_then_record,
    too_slow,
    chain,
    capped,
    nul_result,
    snooze_then_finish,
]


def echo_request(value: object = None, **fields: Any) -> EnqueueRequest:
    """A ``test.echo`` request for tenant t1."""
    return EnqueueRequest(type="test.echo", data={"value": value}, tenant_id="t1", **fields)


class RolledBack(Exception):
    """Raised to roll back the transaction of enqueue_then_roll_back."""


async def enqueue_then_roll_back(runtime: Runtime) -> None:
    """One job alone and a batch of two, on one transaction that rolls back."""
    with contextlib.suppress(RolledBack):
        async with runtime.db.transaction() as conn:
            await runtime.manager.enqueue(echo_request("gone"), conn=conn)
            await runtime.manager.enqueue_many([echo_request(1), echo_request(2)], conn=conn)
            raise RolledBack
