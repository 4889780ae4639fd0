"""The outbound gate against real PostgreSQL: token buckets refilled on the
database clock, the in-flight cap, slots of dead holders, the emergency stop
and the circuit breaker (SPEC §5, decision 0009)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import psycopg
import pytest
from psycopg import sql

from queue_service.core.buckets import BreakerPolicy, BucketLimits, refilled
from queue_service.errors import PermanentError, RetryableError, Snooze
from queue_service.runtime.outbound import STOP_SNOOZE_SECONDS, SharedGate
from queue_service.runtime.service import Runtime
from queue_service.store.outbound import OutboundState
from tests.support.waiting import eventually

GateFactory = Callable[..., SharedGate]


@pytest.fixture
def make_gate(runtime: Runtime) -> GateFactory:
    def make(
        size: float = 3,
        refill: float = 0.5,
        max_in_flight: int = 10,
        *,
        failures: int = 2,
        open_seconds: float = 30.0,
        slot_seconds: float = 30.0,
    ) -> SharedGate:
        return SharedGate(
            runtime.store,
            {"svc": BucketLimits(size, refill, max_in_flight)},
            BreakerPolicy(failures, open_seconds),
            slot_seconds=slot_seconds,
            jitter=lambda: 0.0,
        )

    return make


async def state(runtime: Runtime) -> OutboundState:
    (found,) = await runtime.store.outbound_states("svc")
    return found


async def take(gate: SharedGate, holder: str = "job") -> None:
    async with gate.slot("svc", holder):
        pass


async def snooze_of(gate: SharedGate, holder: str = "job") -> Snooze:
    with pytest.raises(Snooze) as caught:
        await take(gate, holder)
    return caught.value


def shift_clock(database_url: str, seconds: float, column: str = "refilled_at") -> None:
    """Move a stored time back, as if the database clock had run on."""
    assert column in ("refilled_at", "opened_at")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("UPDATE outbound_services SET {c} = {c} - make_interval(secs => %s)").format(
                c=sql.Identifier(column)
            ),
            (seconds,),
        )


async def test_a_bucket_of_size_n_gives_n_calls_at_once_then_snoozes_until_the_next_token(
    runtime: Runtime, make_gate: GateFactory
) -> None:
    gate = make_gate(size=3, refill=0.5)
    for i in range(3):
        await take(gate, f"job-{i}")

    snooze = await snooze_of(gate)

    # Empty after three; one token at 0.5/s is 2 s away (less the few ms
    # that passed since the third call).
    assert 1.8 < snooze.delay_seconds <= 2.0
    assert snooze.reason == "svc: bucket empty"
    assert (await state(runtime)).tokens < 0.1


async def test_the_bucket_refills_by_elapsed_time_on_the_database_clock(
    runtime: Runtime, make_gate: GateFactory, database_url: str
) -> None:
    gate = make_gate(size=4, refill=1)
    for _ in range(4):
        await take(gate)
    await snooze_of(gate)

    shift_clock(database_url, 2.0)  # two seconds at 1/s: two tokens

    # (plus what the few ms of the test itself refilled)
    assert 2.0 <= (await state(runtime)).tokens < 2.5
    await take(gate)
    await take(gate)
    await snooze_of(gate)
    shift_clock(database_url, 3600)  # never above the bucket's size
    assert (await state(runtime)).tokens == 4


async def test_the_refill_rule_in_sql_is_the_one_in_core(database_url: str) -> None:
    cases = [(0.0, 10.0, 2.0, 1.5), (3.2, 5.0, 0.5, 100.0), (1.0, 25.0, 5.0, -3.0)]
    with psycopg.connect(database_url) as conn:
        for tokens, size, rate, elapsed in cases:
            row = conn.execute(
                "SELECT outbound_refilled(%s, %s, %s, now() - make_interval(secs => %s), now())",
                (tokens, size, rate, elapsed),
            ).fetchone()
            assert row is not None
            assert row[0] == pytest.approx(refilled(tokens, size, rate, elapsed))


async def test_no_more_calls_than_the_in_flight_cap_run_at_once(
    runtime: Runtime, make_gate: GateFactory
) -> None:
    gate = make_gate(size=10, refill=1, max_in_flight=2)
    async with AsyncExitStack() as held:
        await held.enter_async_context(gate.slot("svc", "a"))
        await held.enter_async_context(gate.slot("svc", "b"))
        assert (await state(runtime)).in_flight == 2

        snooze = await snooze_of(gate, "c")

        assert snooze.reason == "svc: 2 calls in flight (the cap)"
        # A refused call takes no token.
        assert 8.0 <= (await state(runtime)).tokens < 8.1
    assert (await state(runtime)).in_flight == 0
    await take(gate, "c")


async def test_a_slot_whose_holder_died_stops_counting_when_it_expires(
    runtime: Runtime, make_gate: GateFactory
) -> None:
    gate = make_gate(size=10, refill=1, max_in_flight=1, slot_seconds=30)
    await gate.configure("svc")
    # A holder that took the only slot and was killed (kill -9) before releasing.
    dead_lease = uuid.uuid4()
    dead = await runtime.store.outbound_acquire("svc", "killed-job", dead_lease, 0.3)
    assert dead is not None and dead.slot == 1
    assert "in flight" in (await snooze_of(gate)).reason

    async def expired() -> bool:
        return (await state(runtime)).in_flight == 0

    await eventually(expired, what="the dead holder's slot to expire")
    async with gate.slot("svc", "next-job"):
        # The dead holder's late release cannot free its successor's slot.
        await runtime.store.outbound_release("svc", 1, dead_lease)
        assert (await state(runtime)).in_flight == 1


async def test_an_emergency_stop_snoozes_every_caller_until_reset(
    runtime: Runtime, make_gate: GateFactory
) -> None:
    gate = make_gate(size=10, refill=1)
    await take(gate)
    assert await runtime.store.outbound_stop("svc", "ops@example", "vendor incident")

    for holder in ("a", "b"):
        snooze = await snooze_of(gate, holder)
        assert snooze.delay_seconds == STOP_SNOOZE_SECONDS
        assert snooze.reason == "svc: emergency stop by ops@example: vendor incident"
    stopped = await state(runtime)
    assert stopped.stopped_at is not None and stopped.stop_reason == "vendor incident"

    assert await runtime.store.outbound_reset("svc")
    await take(gate)
    after = await state(runtime)
    assert after.stopped_at is None and after.tokens >= 9


async def fail_once(gate: SharedGate, holder: str = "job") -> None:
    with pytest.raises(RetryableError):
        async with gate.slot("svc", holder):
            raise RetryableError("upstream 503")


async def test_the_breaker_opens_after_k_failures_snoozes_callers_then_a_probe_closes_it(
    runtime: Runtime, make_gate: GateFactory, database_url: str
) -> None:
    gate = make_gate(size=100, refill=10, failures=3, open_seconds=60)
    for _ in range(2):
        await fail_once(gate)
    assert (await state(runtime)).breaker_state == "closed"
    await fail_once(gate)

    opened = await state(runtime)
    assert (opened.breaker_state, opened.consecutive_failures) == ("open", 3)
    assert opened.last_failure == "upstream 503"
    snooze = await snooze_of(gate)
    assert snooze.reason == "svc: circuit breaker open after 3 failures"
    assert 59 < snooze.delay_seconds <= 60

    shift_clock(database_url, 60, "opened_at")  # the open period has passed
    assert (await state(runtime)).breaker_state == "half_open"
    async with gate.slot("svc", "probe"):
        # One probe at a time: everyone else waits for its answer.
        assert "half-open" in (await snooze_of(gate, "other")).reason
    closed = await state(runtime)
    assert (closed.breaker_state, closed.consecutive_failures) == ("closed", 0)
    await take(gate)


async def test_a_failed_probe_opens_the_breaker_again(
    runtime: Runtime, make_gate: GateFactory, database_url: str
) -> None:
    gate = make_gate(size=100, refill=10, failures=1, open_seconds=60)
    await fail_once(gate)
    shift_clock(database_url, 60, "opened_at")

    await fail_once(gate, "probe")

    reopened = await state(runtime)
    assert reopened.breaker_state == "open"
    assert "circuit breaker open" in (await snooze_of(gate)).reason


async def test_a_permanent_error_means_the_service_answered_and_resets_the_count(
    runtime: Runtime, make_gate: GateFactory
) -> None:
    gate = make_gate(size=100, refill=10, failures=3)
    await fail_once(gate)
    await fail_once(gate)
    with pytest.raises(PermanentError):
        async with gate.slot("svc", "job"):
            raise PermanentError("card declined", reason="card_declined")

    assert (await state(runtime)).consecutive_failures == 0
    assert (await state(runtime)).in_flight == 0


async def test_an_unknown_service_is_a_permanent_error_naming_the_known_ones(
    make_gate: GateFactory,
) -> None:
    with pytest.raises(PermanentError, match=r"'svx'; did you mean 'svc'\?"):
        async with make_gate().slot("svx", "job"):
            pass


async def test_the_configuration_updates_a_bucket_and_its_slots(
    runtime: Runtime, make_gate: GateFactory
) -> None:
    await make_gate(size=10, refill=1, max_in_flight=4).configure("svc")
    await make_gate(size=5, refill=2, max_in_flight=2).configure("svc")

    now: Any = await state(runtime)
    assert (now.size, now.refill_per_second, now.max_in_flight, now.tokens) == (5, 2, 2, 5)
    async with runtime.db.connection() as conn:
        cur = await conn.execute("SELECT slot FROM outbound_slots ORDER BY slot")
        assert await cur.fetchall() == [(1,), (2,)]
