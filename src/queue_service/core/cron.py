"""Cron schedules' time rules: a checked 5-field expression in an IANA time
zone, its ticks, and the plan of one leader pass over a due schedule
(which ticks fire, which were missed, where the schedule goes next)."""

from __future__ import annotations

import enum
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from queue_service.core.config_text import suggestion

CRON_HINT = (
    "a cron expression has 5 fields: minute hour day-of-month month day-of-week,"
    " e.g. '*/15 * * * *' (every 15 minutes) or '0 3 * * MON-FRI' (03:00 on weekdays)"
)
# A tick the leader reaches within this long after its time fires as usual; an
# older one was missed (no leader ran) and its schedule's misfire policy decides.
MISFIRE_GRACE = timedelta(seconds=60)
# Ticks one pass itemises; a schedule further behind is caught up over several
# transactions, each bounded (a per-minute schedule left a week: 10,080 ticks).
MAX_TICKS_PER_PASS = 1000


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; the message says why."""


class Misfire(enum.StrEnum):
    """What the leader does with ticks that passed while no leader ran."""

    RUN_ONCE = "run_once"  # one job for all of them
    SKIP = "skip"  # none


class RunStatus(enum.StrEnum):
    FIRED = "fired"  # on time: a job of its own (run_once: the one job)
    MISSED = "missed"  # late, covered by the run_once catch-up job
    SKIPPED = "skipped"  # late, and the policy is skip (or the job was refused)


@cache
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def load_zone(name: str) -> ZoneInfo:
    """An IANA zone by name, or a CronError with a suggestion."""
    try:
        if not name or name != name.strip():
            raise ValueError(name)
        return ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        hint = suggestion(name, _zone_names())
        raise CronError(
            f"unknown time zone {name!r}: give an IANA name such as 'UTC' or 'Europe/Paris'{hint}"
        ) from None


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A 5-field cron expression read in a time zone.

    Daylight-saving time follows Debian cron (cronsim): an expression with a
    fixed minute and hour ('30 2 * * *') fires once a day; on the night the
    clocks go forward, a time that does not exist fires at the first minute
    that does (02:30 -> 03:00), and on the night they go back, a time that
    exists twice fires at its first occurrence only. Expressions with a
    wildcard minute or hour ('*/30 * * * *') tick in real time: every instant
    that matches, both passes of the repeated hour included.
    """

    cron: str
    timezone: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, cron: str, timezone: str = "UTC") -> CronSpec:
        zone = load_zone(timezone)
        expr = " ".join(cron.split())
        if len(expr.split(" ")) != 5:
            raise CronError(f"cron {cron!r} has {len(cron.split())} fields; {CRON_HINT}")
        try:
            ticks = CronSim(expr, datetime.now(zone))
            next(ticks)
        except CronSimError as exc:
            raise CronError(f"cron {cron!r}: {exc}; {CRON_HINT}") from None
        except StopIteration:
            raise CronError(f"cron {cron!r} never fires (no match within 50 years)") from None
        return cls(expr, timezone, zone)

    def explain(self) -> str:
        """Human reading, e.g. 'At the start of every hour (UTC)'."""
        text = CronSim(self.cron, datetime.now(self.zone)).explain()
        return f"{text} ({self.timezone})"

    def ticks_after(self, after: datetime) -> Iterator[datetime]:
        """Every tick strictly after ``after``, in order, as UTC instants."""
        last = after.astimezone(UTC)
        try:
            for tick in CronSim(self.cron, last.astimezone(self.zone)):
                at = tick.astimezone(UTC)
                # Fixed-time expressions iterate on the wall clock: from
                # inside a repeated hour, its first pass can come back.
                if at > last:
                    last = at
                    yield at
        except StopIteration:
            return

    def next_after(self, after: datetime) -> datetime | None:
        """The first tick after ``after``; None if it never fires again."""
        return next(self.ticks_after(after), None)


@dataclass(frozen=True, slots=True)
class Run:
    fire_at: datetime
    status: RunStatus
    job_at: datetime | None  # the tick whose job covers this one (keyed by it)


@dataclass(frozen=True, slots=True)
class FirePlan:
    runs: list[Run]  # every due tick of this pass, oldest first
    job_ticks: list[datetime]  # the ticks that enqueue a job, each keyed by its tick
    next_run_at: datetime | None  # None: the expression never fires again


def plan_pass(
    spec: CronSpec,
    misfire: Misfire,
    next_run_at: datetime,
    now: datetime,
    *,
    grace: timedelta = MISFIRE_GRACE,
    limit: int = MAX_TICKS_PER_PASS,
) -> FirePlan:
    """What one leader pass does with a schedule due at ``next_run_at``.

    skip: ticks within ``grace`` of ``now`` fire, each its own job; older
    ones are recorded skipped. run_once: one job for every due tick, keyed by
    the latest, which is fired if on time and missed otherwise; the rest are
    missed. More than ``limit`` due ticks: this pass records the oldest
    ``limit`` and leaves the rest (and run_once's job) to the next pass.
    """
    due = [next_run_at]
    following: datetime | None = None
    for tick in spec.ticks_after(next_run_at):
        if tick > now or len(due) == limit:
            following = tick
            break
        due.append(tick)
    caught_up = following is None or following > now
    runs: list[Run] = []
    jobs: list[datetime] = []
    if misfire is Misfire.SKIP:
        for tick in due:
            on_time = now - tick <= grace
            runs.append(Run(tick, RunStatus.FIRED if on_time else RunStatus.SKIPPED, None))
            if on_time:
                jobs.append(tick)
        runs = [Run(r.fire_at, r.status, r.fire_at if r.fire_at in jobs else None) for r in runs]
    else:
        latest = due[-1] if caught_up else None
        for tick in due:
            on_time = tick == latest and now - tick <= grace
            runs.append(Run(tick, RunStatus.FIRED if on_time else RunStatus.MISSED, latest))
        if latest is not None:
            jobs.append(latest)
    return FirePlan(runs, jobs, following)
