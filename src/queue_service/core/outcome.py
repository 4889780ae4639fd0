"""How an attempt ended, as a value the worker then persists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Completed:
    result: Any = None


@dataclass(frozen=True, slots=True)
class CompletedInTransaction:
    """The processor completed the job in its own transaction already."""


@dataclass(frozen=True, slots=True)
class Retry:
    delay_seconds: float
    error: str


@dataclass(frozen=True, slots=True)
class Snoozed:
    """Not now: waiting again after the delay, the attempt not counted."""

    delay_seconds: float
    reason: str


@dataclass(frozen=True, slots=True)
class Failed:
    """Permanent, or out of attempts: the job goes to the DLQ."""

    error: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    reason: str


@dataclass(frozen=True, slots=True)
class Released:
    """Interrupted by shutdown: back to waiting, the attempt not counted."""


@dataclass(frozen=True, slots=True)
class LeaseLost:
    """Another attempt owns the job now; this one writes nothing."""


Outcome = (
    Completed | CompletedInTransaction | Retry | Snoozed | Failed | Cancelled | Released | LeaseLost
)
