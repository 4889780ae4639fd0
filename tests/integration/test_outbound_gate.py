"""The outbound gate against real PostgreSQL: token buckets refilled on the
database clock, reservations (booked in order, used once, lapsing without
ever letting the bucket overflow), the in-flight cap, slots of dead holders,
the emergency stop and the circuit breaker (SPEC §5, decision 0009)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import psycopg
import pytest
from psycopg import sql

from queue_service.core.buckets import BreakerPolicy, BucketLimits, refilled, worst_window
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
        grace_seconds: float = 5.0,
        horizon_seconds: float = 60.0,
    ) -> SharedGate:
        return SharedGate(
            runtime.store,
            {"svc": BucketLimits(size, refill, max_in_flight)},
            BreakerPolicy(failures, open_seconds),
            slot_seconds=slot_seconds,
            jitter=lambda: 0.0,
            grace_seconds=grace_seconds,
            horizon_seconds=horizon_seconds,
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
    # that passed since the third call), and it is this caller's now.
    assert 1.8 < snooze.delay_seconds <= 2.0
    assert snooze.reason == "svc: bucket empty, next token reserved"
    after = await state(runtime)
    assert after.tokens < 0.1
    assert after.reserved == 1


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


# Reservations (decision 0009): a caller that finds no token free of promises
# is booked the next one and snoozes until it is due; its next acquire uses it.


def travel(database_url: str, seconds: float) -> None:
    """Move every stored time of the buckets and reservations back, as if
    ``seconds`` had passed on the database clock."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE outbound_services SET refilled_at = refilled_at - make_interval(secs => %s)",
            (seconds,),
        )
        conn.execute(
            "UPDATE outbound_reservations SET due_at = due_at - make_interval(secs => %(s)s),"
            " expires_at = expires_at - make_interval(secs => %(s)s)",
            {"s": seconds},
        )


async def bookings(runtime: Runtime) -> list[tuple[str, float, int]]:
    """(holder, seconds until due, tokens) of every reservation, in due order."""
    async with runtime.db.connection() as conn:
        cur = await conn.execute(
            "SELECT holder, extract(epoch FROM due_at - now())::float8, tokens"
            " FROM outbound_reservations ORDER BY due_at"
        )
        return list(await cur.fetchall())


async def granted_at(runtime: Runtime, gate: SharedGate, holder: str) -> float:
    """Take a token and a slot; the grant's time on the database clock (the
    slot's taken_at: the acquiring statement's now())."""
    async with gate.slot("svc", holder), runtime.db.connection() as conn:
        cur = await conn.execute(
            "SELECT extract(epoch FROM taken_at)::float8 FROM outbound_slots WHERE holder = %s",
            (holder,),
        )
        row = await cur.fetchone()
    assert row is not None
    return float(row[0])


async def test_waiters_beyond_the_bucket_are_booked_one_interval_apart_in_arrival_order(
    runtime: Runtime, make_gate: GateFactory
) -> None:
    gate = make_gate(size=2, refill=4)
    for i in range(2):
        await take(gate, f"first-{i}")

    delays = [(await snooze_of(gate, f"w{k}")).delay_seconds for k in range(6)]

    booked = await bookings(runtime)
    assert [holder for holder, _, _ in booked] == [f"w{k}" for k in range(6)]
    dues = [due for _, due, _ in booked]
    # Exactly 1/refill apart on the database clock (the locked row's figures,
    # not a snapshot: no two share a token), the first one interval away.
    assert all(b - a == pytest.approx(0.25, abs=0.005) for a, b in itertools.pairwise(dues))
    assert dues[0] <= 0.251
    # Each snoozes until its own time (less the ms since the bucket emptied;
    # a loaded machine may take a while between the statements).
    assert all(0.25 * k < d <= 0.25 * (k + 1) + 0.01 for k, d in enumerate(delays))
    assert (await state(runtime)).reserved == 6

    # Booked at once from many connections: the service row's lock lines
    # them up, so still one distinct token each, 1/refill apart, after w5's.
    await asyncio.gather(*(snooze_of(gate, f"c{k}") for k in range(10)))
    dues = [due for _, due, _ in await bookings(runtime)]
    assert len(dues) == 16
    assert all(b - a == pytest.approx(0.25, abs=0.005) for a, b in itertools.pairwise(dues))
    assert (await state(runtime)).reserved == 16


async def test_each_waiter_is_admitted_exactly_once_at_its_time_and_the_bucket_holds(
    runtime: Runtime, make_gate: GateFactory
) -> None:
    # A token every 0.25 s: a waiter may wake up to 0.5 s late (a loaded
    # machine's event loop) before the bucket, full at its size, loses refill
    # that was promised to it. At 10 a second that margin was 0.2 s, and a
    # loaded CI run found a waiter's token "due, not yet refilled".
    limits = BucketLimits(2, 4, 10)
    gate = make_gate(size=limits.size, refill=limits.refill_per_second)
    grants = [await granted_at(runtime, gate, f"first-{i}") for i in range(2)]
    waiters = [f"w{k}" for k in range(8)]
    delays = {w: (await snooze_of(gate, w)).delay_seconds for w in waiters}

    async def waiter(holder: str) -> float:
        # Before its time a booking is kept, not used, and books nothing more.
        if delays[holder] > 0.15:
            early = await snooze_of(gate, holder)
            assert early.reason == "svc: reserved token not due yet"
        await asyncio.sleep(delays[holder])
        return await granted_at(runtime, gate, holder)  # no snooze: its token is there

    async def stranger() -> list[Snooze]:
        # Someone without a booking, trying all the while: every token is
        # promised, so it is booked at the back of the line, never let in.
        got = []
        for _ in range(4):
            got.append(await snooze_of(gate, "stranger"))
            await asyncio.sleep(0.15)
        return got

    admitted, refused = await asyncio.gather(
        asyncio.gather(*(waiter(w) for w in waiters)), stranger()
    )

    grants += admitted
    assert len(grants) == 10
    assert admitted == sorted(admitted)  # in booking order
    count, seconds, excess = worst_window(limits, sorted(grants))
    assert excess <= 0, f"{count} grants within {seconds:.3f} s"
    assert refused[0].reason == "svc: bucket empty, next token reserved"
    assert {s.reason for s in refused[1:]} == {"svc: reserved token not due yet"}
    # Used bookings promise nothing more; the stranger's one is still out.
    assert (await state(runtime)).reserved == 1
    # Used once: the same holder again is booked anew, not let in again.
    again = await snooze_of(gate, "w0")
    assert again.reason == "svc: bucket empty, next token reserved"


async def test_a_late_holder_uses_its_token_without_letting_the_next_caller_in_early(
    runtime: Runtime, make_gate: GateFactory, database_url: str
) -> None:
    gate = make_gate(size=1, refill=1, grace_seconds=5)
    await take(gate, "a")
    await snooze_of(gate, "late")  # due in 1 s
    travel(database_url, 1.9)  # back 0.9 s late, within the grace

    await take(gate, "late")

    # A debt that kept refilling while the token waited for its holder would
    # book the next caller 0.1 s from now: two calls in 0.1 s through a
    # bucket of one. The bucket is what decides: the next token is 1 s away.
    nxt = await snooze_of(gate, "next")
    assert 0.9 < nxt.delay_seconds <= 1.01


async def test_a_booking_never_used_lapses_and_gives_its_token_back_but_never_twice(
    runtime: Runtime, make_gate: GateFactory, database_url: str
) -> None:
    gate = make_gate(size=3, refill=1, grace_seconds=1)
    for holder in ("a", "b", "c"):
        await take(gate, holder)
    await snooze_of(gate, "gone")  # due in 1 s, lapses at 2 s; never back
    await snooze_of(gate, "queued")  # due in 2 s
    travel(database_url, 1.5)
    # Due, not lapsed: still promised to "gone", so "queued" waits its turn.
    assert (await snooze_of(gate, "queued")).reason == "svc: reserved token not due yet"

    travel(database_url, 1.1)  # 2.6 s: "gone" lapsed; 2.6 tokens refilled

    await take(gate, "queued")  # this acquire also deletes the lapsed booking
    assert (await state(runtime)).reserved == 0
    # The lapsed token is in the pool: a caller without a booking gets it now
    # (with "gone" still promised one, it would have been booked behind).
    await take(gate, "x")
    # and no more than the bucket holds: 5 calls in 2.6 s through 3 + 1/s.
    nxt = await snooze_of(gate, "y")
    # (0.4 s at the travelled clock, less the real time this test took since:
    # a loaded machine has taken 0.2 s, so only the upper bounds are tight.)
    assert nxt.reason == "svc: bucket empty, next token reserved"
    assert 0 < nxt.delay_seconds <= 0.41
    # Its holder back after the lapse holds nothing: booked anew, at the back,
    # a whole token behind "y".
    late = await snooze_of(gate, "gone")
    assert late.reason == "svc: bucket empty, next token reserved"
    assert nxt.delay_seconds + 0.9 < late.delay_seconds <= 1.41
    # "queued"'s used-up booking stays as the memory of its run's calls.
    assert [(h, t) for h, _, t in await bookings(runtime)] == [
        ("queued", 0),
        ("y", 1),
        ("gone", 1),
    ]


async def test_no_booking_beyond_the_horizon(runtime: Runtime, make_gate: GateFactory) -> None:
    gate = make_gate(size=1, refill=1, horizon_seconds=2.5)
    await take(gate, "a")
    await snooze_of(gate, "b")  # due in 1 s
    await snooze_of(gate, "c")  # due in 2 s

    beyond = await snooze_of(gate, "d")  # would be due in 3 s

    assert beyond.reason == "svc: bucket booked 2.5 s ahead"
    # Back when a booking would fall within the horizon again (no jitter here).
    # Back after one interval, the least it waits (no jitter here).
    assert beyond.delay_seconds == 1.0
    assert [holder for holder, _, _ in await bookings(runtime)] == ["b", "c"]
    assert (await state(runtime)).reserved == 2


async def test_a_due_booking_waits_for_a_slot_and_keeps_its_place(
    runtime: Runtime, make_gate: GateFactory, database_url: str
) -> None:
    gate = make_gate(size=1, refill=1, max_in_flight=1, grace_seconds=1)
    async with gate.slot("svc", "a"):
        await snooze_of(gate, "b")  # booked, due in 1 s
        travel(database_url, 1.8)  # due; 0.2 s of grace left
        held = await snooze_of(gate, "b")
        assert held.reason == "svc: 1 calls in flight (the cap)"
        # Kept, and its lapse pushed a grace away while it waits for the slot.
        ((holder, _, tokens),) = await bookings(runtime)
        assert (holder, tokens) == ("b", 1)
        travel(database_url, 0.5)  # past its first lapse time
        assert (await snooze_of(gate, "b")).reason == "svc: 1 calls in flight (the cap)"
        assert (await state(runtime)).reserved == 1
    await take(gate, "b")
    assert (await state(runtime)).reserved == 0


async def test_a_job_making_two_calls_a_run_books_two_tokens_and_gets_through(
    runtime: Runtime, make_gate: GateFactory, database_url: str
) -> None:
    # A bucket of at least two: a bucket of one never gives two calls in the
    # same moment, booked or not.
    gate = make_gate(size=2, refill=1)
    await take(gate, "other")
    await take(gate, "other")

    async def run(holder: str) -> bool:
        """One run of a job that makes two calls; whether it finished."""
        try:
            await take(gate, holder)
            await take(gate, holder)
        except Snooze:
            return False
        return True

    assert not await run("job")  # first call booked
    travel(database_url, 1.0)
    # Its booking serves the first call; the second is booked with one more
    # token than the run used, so the next run has both.
    assert not await run("job")
    assert [(h, t) for h, _, t in await bookings(runtime)] == [("job", 2)]
    travel(database_url, 2.0)
    assert await run("job")
    assert (await state(runtime)).reserved == 0


async def test_a_reset_drops_every_booking(runtime: Runtime, make_gate: GateFactory) -> None:
    gate = make_gate(size=1, refill=0.1)
    await take(gate, "a")
    for holder in ("b", "c"):
        await snooze_of(gate, holder)
    assert (await state(runtime)).reserved == 2

    assert await runtime.store.outbound_reset("svc")

    assert await bookings(runtime) == []
    assert (await state(runtime)).reserved == 0
    await take(gate, "c")  # a full bucket again, first come first served


async def test_a_stopped_service_or_an_open_breaker_books_nothing(
    runtime: Runtime, make_gate: GateFactory, database_url: str
) -> None:
    gate = make_gate(size=1, refill=1, failures=1, open_seconds=60)
    await fail_once(gate)  # the only token, and the breaker opens
    assert "circuit breaker open" in (await snooze_of(gate, "b")).reason
    shift_clock(database_url, 60, "opened_at")
    # Past its period with no token: the first token through will be the
    # probe, and no one is booked ahead of it.
    assert (await snooze_of(gate, "b")).reason == "svc: bucket empty"
    assert await runtime.store.outbound_stop("svc", "ops", None)
    assert (await snooze_of(gate, "c")).delay_seconds == STOP_SNOOZE_SECONDS
    assert await bookings(runtime) == []
    assert (await state(runtime)).reserved == 0
