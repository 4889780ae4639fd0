"""Retry policies: how long to wait before attempt n+1 (SPEC §3).

Pure functions of the attempt number and an injected jitter source, so tests
can assert exact delays.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Strategy = Literal["exponential", "linear", "fibonacci", "fixed"]

# Returns a factor in [0, 1). Full jitter scales the computed delay by
# 0.5 + factor / 2, keeping at least half the wait (so retries still spread
# out) while de-synchronising workers that failed together.
JitterSource = Callable[[], float]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    strategy: Strategy = "exponential"
    base_seconds: float = 2.0
    max_seconds: float = 60.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_seconds < 0 or self.max_seconds < self.base_seconds:
            raise ValueError("need 0 <= base_seconds <= max_seconds")

    def raw_delay(self, attempt: int) -> float:
        """The delay after failed attempt ``attempt`` (1-based), before jitter."""
        if attempt < 1:
            raise ValueError("attempt is 1-based")
        if self.strategy == "fixed":
            delay = self.base_seconds
        elif self.strategy == "linear":
            delay = self.base_seconds * attempt
        elif self.strategy == "fibonacci":
            delay = self.base_seconds * _fibonacci(attempt)
        else:
            # Cap the exponent: 2**1000 is a float overflow waiting to happen.
            delay = self.base_seconds * 2.0 ** min(attempt - 1, 62)
        return min(delay, self.max_seconds)

    def delay(self, attempt: int, jitter_source: JitterSource = random.random) -> float:
        """The delay to apply, with jitter when the policy has it."""
        delay = self.raw_delay(attempt)
        if self.jitter:
            delay *= 0.5 + jitter_source() / 2
        return delay

    def exhausted(self, attempts: int, max_attempts: int | None = None) -> bool:
        """True when no attempt is left after ``attempts`` have run."""
        return attempts >= (max_attempts if max_attempts is not None else self.max_attempts)


def _fibonacci(n: int) -> int:
    a, b = 1, 1
    for _ in range(min(n, 90) - 1):
        a, b = b, a + b
    return a


# SPEC §3, by job type family.
MONEY_RETRY = RetryPolicy(5, "exponential", 1.0, 60.0, jitter=True)
MINT_RETRY = RetryPolicy(3, "exponential", 5.0, 300.0, jitter=True)
EMAIL_RETRY = RetryPolicy(3, "linear", 2.0, 10.0, jitter=False)
WEBHOOK_RETRY = RetryPolicy(4, "fibonacci", 1.0, 30.0, jitter=True)
DEFAULT_RETRY = RetryPolicy(3, "exponential", 2.0, 60.0, jitter=True)
