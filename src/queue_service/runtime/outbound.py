"""The outbound gate (SPEC §5): a call to an external service takes a token
and an in-flight slot from the service's bucket in PostgreSQL, shared by
every process, or the job snoozes; its outcome feeds the service's breaker.
A job that finds no token free is booked the next one (a reservation) and
snoozes until it is due, so a backlog waits in line once instead of all
coming back for every token (decision 0009).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime

import structlog

from queue_service.core.buckets import BreakerPolicy, BucketLimits, seconds_until_token
from queue_service.core.config_text import suggestion
from queue_service.core.retry import JitterSource
from queue_service.errors import PermanentError, RetryableError, Snooze
from queue_service.store.outbound import Acquired, OutboundState, OutboundStore

log = structlog.get_logger("queue_service.outbound")

# A stopped service is looked at again this often: a reset shows within it.
STOP_SNOOZE_SECONDS = 30.0
# While a half-open breaker's probe is out, others ask again this soon.
PROBE_WAIT_SECONDS = 1.0
# A call that found every slot taken waits about as long as a short call lasts.
IN_FLIGHT_SNOOZE_SECONDS = 0.25
# A reservation not used this long after it is due lapses and its token goes
# back to the pool: long enough for a snoozed job to be claimed again (a poll
# or two), short enough that a cancelled job's booking is not missed for long.
RESERVATION_GRACE_SECONDS = 5.0
# No token is booked further ahead than this: a huge backlog does not book
# hours of tokens; callers beyond it snooze without a booking and try again.
RESERVATION_HORIZON_SECONDS = 60.0
# A booked job comes back this much after its due time at most: bookings are
# 1/refill apart already, so this only spreads jobs booked for one instant.
RESERVATION_JITTER_SECONDS = 0.05


class SharedGate:
    """The OutboundGate of processors/deps.py, backed by the database.

    A caller that finds no token free of promises is booked the next one
    and snoozes until it is due (plus up to RESERVATION_JITTER_SECONDS); its
    holder's next acquire then uses it. Other snoozes get up to one token's
    interval of jitter (``jitter`` returns a factor in [0, 1)), so callers
    refused together do not all come back at once.
    """

    def __init__(
        self,
        store: OutboundStore,
        limits: Mapping[str, BucketLimits],
        breaker: BreakerPolicy,
        *,
        slot_seconds: float = 30.0,
        jitter: JitterSource = random.random,
        grace_seconds: float = RESERVATION_GRACE_SECONDS,
        horizon_seconds: float = RESERVATION_HORIZON_SECONDS,
    ) -> None:
        self.store = store
        self.limits = dict(limits)
        self.breaker = breaker
        self.slot_seconds = slot_seconds
        self.jitter = jitter
        self.grace_seconds = grace_seconds
        self.horizon_seconds = horizon_seconds
        self._configured: set[str] = set()
        self._configuring = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def slot(self, service: str, holder: str) -> AsyncIterator[None]:
        # The lease fences this call's release: a slot that expired and was
        # taken over is never freed by its former holder.
        lease = uuid.uuid4()
        got = await self._acquire(service, holder, lease)
        if got.slot is None:
            raise Snooze(*self._refusal(service, got))
        slot = got.slot
        if got.probe:
            log.info("circuit breaker half-open: probe call", service=service, holder=holder)
        keeper = asyncio.create_task(self._keep(service, slot, lease), name=f"slot {service}")
        failure: str | None = None
        answered = False
        try:
            yield
            answered = True
        except RetryableError as exc:
            failure = str(exc) or type(exc).__name__
            raise
        except Exception:
            answered = True  # the service answered; the error is the caller's
            raise
        finally:
            keeper.cancel()
            # Cancellation (shutdown, timeout) says nothing about the service:
            # the slot goes back, the breaker hears nothing.
            await self._finish(service, slot, lease, failure, answered=answered)

    async def _acquire(self, service: str, holder: str, lease: uuid.UUID) -> Acquired:
        if service not in self.limits:
            hint = suggestion(service, self.limits)
            raise PermanentError(
                f"no outbound limit for service {service!r}{hint} "
                f"(known: {', '.join(sorted(self.limits))}; "
                "QUEUE_SERVICE_OUTBOUND_LIMITS adds one)",
                reason="configuration",
            )
        if service not in self._configured:
            await self.configure(service)
        got = await self._acquire_once(service, holder, lease)
        if got is None:  # the row was removed behind our back: make it again
            self._configured.discard(service)
            await self.configure(service)
            got = await self._acquire_once(service, holder, lease)
        if got is None:
            raise RetryableError(f"outbound service {service!r} has no bucket row")
        return got

    async def _acquire_once(self, service: str, holder: str, lease: uuid.UUID) -> Acquired | None:
        return await self.store.outbound_acquire(
            service,
            holder,
            lease,
            self.slot_seconds,
            grace_seconds=self.grace_seconds,
            horizon_seconds=self.horizon_seconds,
        )

    async def configure(self, service: str) -> None:
        """Create or update the service's bucket from configuration (once per
        process, at its first call)."""
        async with self._configuring:
            if service in self._configured:
                return
            await self.store.outbound_configure(service, self.limits[service], self.breaker)
            self._configured.add(service)

    def _refusal(self, service: str, got: Acquired) -> tuple[float, str]:
        """How long to snooze and why, when no token or slot was taken."""
        limits = self.limits[service]
        interval = 1.0 / limits.refill_per_second
        due_in = got.due_in or 0.0
        if got.verdict == "reserved":
            return (
                due_in + self.jitter() * RESERVATION_JITTER_SECONDS,
                f"{service}: bucket empty, next token reserved",
            )
        if got.verdict == "early":
            return (
                due_in + self.jitter() * RESERVATION_JITTER_SECONDS,
                f"{service}: reserved token not due yet",
            )
        if got.verdict == "beyond":
            # Come back when a booking would fall within the horizon, spread
            # over half of it: bookings free up at the bucket's rate.
            return (
                max(interval, due_in - self.horizon_seconds)
                + self.jitter() * self.horizon_seconds / 2,
                f"{service}: bucket booked {self.horizon_seconds:g} s ahead",
            )
        if got.stopped:
            by = f" by {got.stopped_by}" if got.stopped_by else ""
            why = f": {got.stop_reason}" if got.stop_reason else ""
            return STOP_SNOOZE_SECONDS, f"{service}: emergency stop{by}{why}"
        if got.breaker_state == "open" and (got.seconds_to_half_open or 0.0) > 0:
            return (
                got.seconds_to_half_open or 0.0,
                f"{service}: circuit breaker open after {got.consecutive_failures} failures",
            )
        if got.breaker_state == "half_open":
            return PROBE_WAIT_SECONDS, f"{service}: circuit breaker half-open, a probe call is out"
        if not got.slot_free:
            return (
                IN_FLIGHT_SNOOZE_SECONDS + self.jitter() * interval,
                f"{service}: {limits.max_in_flight} calls in flight (the cap)",
            )
        if got.verdict == "held":
            # Due, but no whole token: holders booked ahead came late while the
            # bucket sat full at its size (refill beyond it is lost), or the
            # booking is for more calls than the bucket holds. It asks again
            # when the next token is whole; its booking is kept meanwhile.
            wait = seconds_until_token(got.tokens, limits.refill_per_second) or interval
            return wait, f"{service}: reserved token due, not yet refilled"
        # Refused with no token (an open breaker past its period books
        # nothing): wait for the first token free of promises.
        free = got.tokens - got.reserved
        wait = seconds_until_token(free, limits.refill_per_second) or interval
        return wait + self.jitter() * interval, f"{service}: bucket empty"

    async def _keep(self, service: str, slot: int, lease: uuid.UUID) -> None:
        """Extend the slot's expiry while the call runs (a third of it at a time)."""
        while True:
            await asyncio.sleep(self.slot_seconds / 3)
            try:
                if not await self.store.outbound_slot_extend(
                    service, slot, lease, self.slot_seconds
                ):
                    log.warning("in-flight slot was taken over", service=service, slot=slot)
                    return
            except Exception:
                log.warning("could not extend an in-flight slot", service=service, exc_info=True)

    async def _finish(
        self, service: str, slot: int, lease: uuid.UUID, failure: str | None, *, answered: bool
    ) -> None:
        report = (
            self.store.outbound_breaker_failure(service, failure)
            if failure is not None
            else self.store.outbound_breaker_success(service)
            if answered
            else None
        )
        steps = [self.store.outbound_release(service, slot, lease)]
        # Two statements on two connections at once: one round trip of
        # latency. Never one statement: see outbound_release.
        results = await asyncio.gather(
            *steps, *([report] if report is not None else []), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                # The slot expires on its own; the breaker misses one report.
                log.warning("outbound release failed", service=service, error=str(result))
        if failure is not None and results[-1] == "open":
            log.warning("circuit breaker open", service=service, error=failure)


def unused_state(service: str, limits: BucketLimits, breaker: BreakerPolicy) -> OutboundState:
    """A service no process has called yet: its configured bucket, full, closed."""
    return OutboundState(
        service=service,
        size=limits.size,
        refill_per_second=limits.refill_per_second,
        max_in_flight=limits.max_in_flight,
        tokens=limits.size,
        in_flight=0,
        reserved=0,
        reserved_until=None,
        stopped_at=None,
        stopped_by=None,
        stop_reason=None,
        breaker_state="closed",
        consecutive_failures=0,
        breaker_failures=breaker.failures,
        breaker_open_seconds=breaker.open_seconds,
        opened_at=None,
        half_open_at=None,
        last_failure=None,
        read_at=datetime.now(UTC),
    )


async def read_states(
    store: OutboundStore,
    limits: Mapping[str, BucketLimits],
    breaker: BreakerPolicy,
    service: str | None = None,
) -> list[OutboundState]:
    """Every service's state (or one's) for the API, the CLI, metrics and the
    dashboard: the database's rows, and configured services not yet called."""
    found = {s.service: s for s in await store.outbound_states(service)}
    names = [service] if service is not None else sorted(set(limits) | set(found))
    return [
        found[n] if n in found else unused_state(n, limits[n], breaker)
        for n in names
        if n in found or n in limits
    ]
