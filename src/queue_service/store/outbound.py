"""Statements of the outbound rate limits and circuit breakers: one method per
statement of store/sql/outbound.sql, rows read by name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from psycopg.rows import class_row

from queue_service.core.buckets import BreakerPolicy, BucketLimits
from queue_service.store.db import Database
from queue_service.store.queries import Q

BreakerState = Literal["closed", "open", "half_open"]
# What an acquire did (outbound_acquire's verdict): a token taken (`taken`,
# or `used` from the holder's reservation), a token booked (`reserved`), or
# nothing and why: `refused` (stop, breaker), `busy` (every slot taken),
# `held` (the holder's booking is due; its token or a slot is not there yet),
# `early` (the booking is not due), `beyond` (a booking would pass the horizon).
Verdict = Literal["taken", "used", "reserved", "refused", "busy", "held", "early", "beyond"]


@dataclass(frozen=True, slots=True)
class Acquired:
    """What an acquire found. ``slot`` is set when a token and a slot were
    taken; otherwise the rest says why not (as of the service row it locked)."""

    slot: int | None
    verdict: Verdict
    probe: bool  # this call is the half-open breaker's one probe
    slot_free: bool
    tokens: float  # in the bucket, including tokens promised to reservations
    reserved: int  # tokens promised to reservations, before this acquire
    refill_per_second: float
    # Seconds until the booking is due (`reserved`, `early`), or until it
    # would have been (`beyond`).
    due_in: float | None
    stopped: bool
    stopped_by: str | None
    stop_reason: str | None
    breaker_state: BreakerState
    consecutive_failures: int
    seconds_to_half_open: float | None


@dataclass(frozen=True, slots=True)
class OutboundState:
    """One service's bucket, stop and breaker, as the database sees them now."""

    service: str
    size: float
    refill_per_second: float
    max_in_flight: int
    tokens: float
    in_flight: int
    reserved: int  # tokens promised to live reservations
    reserved_until: datetime | None  # when the last booked token is due
    stopped_at: datetime | None
    stopped_by: str | None
    stop_reason: str | None
    breaker_state: BreakerState
    consecutive_failures: int
    breaker_failures: int
    breaker_open_seconds: float
    opened_at: datetime | None
    half_open_at: datetime | None
    last_failure: str | None
    read_at: datetime


class OutboundStore:
    db: Database

    async def outbound_configure(
        self, service: str, limits: BucketLimits, breaker: BreakerPolicy
    ) -> None:
        async with self.db.connection() as c:
            await c.execute(
                Q["outbound_configure"],
                {
                    "service": service,
                    "size": limits.size,
                    "refill": limits.refill_per_second,
                    "max_in_flight": limits.max_in_flight,
                    "failures": breaker.failures,
                    "open_seconds": breaker.open_seconds,
                },
            )

    async def outbound_acquire(
        self,
        service: str,
        holder: str,
        lease: UUID,
        slot_seconds: float,
        *,
        grace_seconds: float = 5.0,
        horizon_seconds: float = 60.0,
    ) -> Acquired | None:
        """None when the service has no row yet (configure it first). A
        reservation lapses ``grace_seconds`` after it is due; none is booked
        more than ``horizon_seconds`` ahead."""
        async with self.db.connection() as c, c.cursor(row_factory=class_row(Acquired)) as cur:
            await cur.execute(
                Q["outbound_acquire"],
                {
                    "service": service,
                    "holder": holder,
                    "lease": lease,
                    "slot_seconds": slot_seconds,
                    "grace_seconds": grace_seconds,
                    "horizon_seconds": horizon_seconds,
                },
            )
            return await cur.fetchone()

    async def outbound_slot_extend(
        self, service: str, slot: int, lease: UUID, slot_seconds: float
    ) -> bool:
        async with self.db.connection() as c:
            cur = await c.execute(
                Q["outbound_slot_extend"],
                {"service": service, "slot": slot, "lease": lease, "slot_seconds": slot_seconds},
            )
            return await cur.fetchone() is not None

    async def outbound_release(self, service: str, slot: int, lease: UUID) -> None:
        async with self.db.connection() as c:
            await c.execute(
                Q["outbound_release"], {"service": service, "slot": slot, "lease": lease}
            )

    async def outbound_breaker_success(self, service: str) -> bool:
        """Whether this closed the breaker or cleared a failure count."""
        async with self.db.connection() as c:
            cur = await c.execute(Q["outbound_breaker_success"], {"service": service})
            return await cur.fetchone() is not None

    async def outbound_breaker_failure(self, service: str, error: str) -> BreakerState | None:
        """The breaker's state after counting the failure."""
        async with self.db.connection() as c:
            cur = await c.execute(
                Q["outbound_breaker_failure"], {"service": service, "error": error[:500]}
            )
            row = await cur.fetchone()
        return row[0] if row else None

    async def outbound_stop(self, service: str, by: str, reason: str | None) -> bool:
        async with self.db.connection() as c:
            cur = await c.execute(
                Q["outbound_stop"], {"service": service, "by": by, "reason": reason}
            )
            return await cur.fetchone() is not None

    async def outbound_reset(self, service: str) -> bool:
        async with self.db.connection() as c:
            cur = await c.execute(Q["outbound_reset"], {"service": service})
            return await cur.fetchone() is not None

    async def outbound_states(self, service: str | None = None) -> list[OutboundState]:
        """Every configured service's state (or one's): the reader for metrics,
        the dashboard, the API and the CLI."""
        async with (
            self.db.connection() as c,
            c.cursor(row_factory=class_row(OutboundState)) as cur,
        ):
            await cur.execute(Q["outbound_states"], {"service": service})
            return await cur.fetchall()
