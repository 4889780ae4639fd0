"""Token-bucket maths for the outbound rate limits (SPEC §5): refill, time
until the next token, the most calls a window may see, and the configured
limits per service. Pure; store/sql/outbound.sql does the same sums on the
database clock (its ``outbound_refilled`` function mirrors ``refilled``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from queue_service.core.config_text import json_object, suggestion


@dataclass(frozen=True, slots=True)
class BucketLimits:
    """One service's bucket: ``size`` tokens at most, ``refill_per_second``
    added continuously, at most ``max_in_flight`` calls at once."""

    size: float
    refill_per_second: float
    max_in_flight: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.size) and self.size >= 1):
            raise ValueError(
                f"size must be at least 1 (a call takes a whole token), not {self.size}"
            )
        if not (math.isfinite(self.refill_per_second) and self.refill_per_second > 0):
            raise ValueError(
                f"refill_per_second must be above 0 (an empty bucket must refill), "
                f"not {self.refill_per_second}"
            )
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {self.max_in_flight}")


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """Open after ``failures`` retryable failures in a row; after
    ``open_seconds`` let one probe call through (half-open)."""

    failures: int = 5
    open_seconds: float = 30.0


def refilled(tokens: float, size: float, refill_per_second: float, elapsed_seconds: float) -> float:
    """Tokens after ``elapsed_seconds`` of refill, never above ``size``. A
    negative elapsed time (clocks read out of order) adds nothing."""
    return min(size, tokens + max(0.0, elapsed_seconds) * refill_per_second)


def seconds_until_token(tokens: float, refill_per_second: float) -> float:
    """How long until a bucket holding ``tokens`` has one whole token."""
    if tokens >= 1.0:
        return 0.0
    return (1.0 - tokens) / refill_per_second


def window_allowance(limits: BucketLimits, window_seconds: float) -> float:
    """The most calls any interval of ``window_seconds`` can admit: a full
    bucket plus what refills during the interval."""
    return limits.size + limits.refill_per_second * max(0.0, window_seconds)


def worst_window(
    limits: BucketLimits, arrivals: list[float], slack_seconds: float = 0.0
) -> tuple[int, float, float]:
    """Of every interval between two arrivals (sorted seconds), the one whose
    count most exceeds what the bucket allows, ``slack_seconds`` widening each
    (clock skew between who granted and who saw): (count, seconds, excess).
    An excess above 0 means the bucket did not hold."""
    worst = (0, 0.0, float("-inf"))
    for i, start in enumerate(arrivals):
        for j in range(i, len(arrivals)):
            seconds = arrivals[j] - start
            count = j - i + 1
            excess = count - window_allowance(limits, seconds + slack_seconds)
            if excess > worst[2]:
                worst = (count, seconds, excess)
    return worst


# SPEC §5 for stripe, solana and internal; twilio, smtp and webhooks are ours
# (README, decision 0009): twilio's REST API takes bursts and queues messages
# per sending number; SMTP relays throttle connections more than messages;
# webhooks go to many receivers, so their bucket guards our own egress.
DEFAULT_LIMITS: dict[str, BucketLimits] = {
    "stripe": BucketLimits(25, 5, 10),
    "solana": BucketLimits(10, 2, 5),
    "internal": BucketLimits(100, 50, 50),
    "twilio": BucketLimits(20, 5, 10),
    "smtp": BucketLimits(20, 5, 5),
    "webhooks": BucketLimits(50, 20, 20),
}

_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_FIELDS = ("size", "refill_per_second", "max_in_flight")
# The inbound limits' keys: /rate-limits/{status,reset}/{key} serves both kinds.
_RESERVED = frozenset({"enqueue", "read", "admin"})
_SETTING = "QUEUE_SERVICE_OUTBOUND_LIMITS"


def parse_limits(text: str) -> dict[str, BucketLimits]:
    """The defaults overlaid with a JSON object of per-service overrides, e.g.
    ``{"stripe": {"size": 25, "refill_per_second": 5, "max_in_flight": 10}}``.
    A known service may override some fields; a new one must give all three.
    Raises ValueError with a message that says how to fix the setting."""
    limits = dict(DEFAULT_LIMITS)
    if not text.strip():
        return limits
    value = json_object(
        text,
        _SETTING,
        'a JSON object, e.g. {"stripe": {"size": 25, "refill_per_second": 5, "max_in_flight": 10}}',
    )
    for service, fields in value.items():
        limits[service] = _one_service(service, fields)
    return limits


def _one_service(service: str, fields: Any) -> BucketLimits:
    where = f"{_SETTING}[{service!r}]"
    if not _SERVICE_NAME.match(service):
        raise ValueError(f"{where}: a service name is lower case letters, digits, - or _")
    if service in _RESERVED:
        raise ValueError(f"{where}: {service!r} names an inbound rate limit; choose another name")
    if not isinstance(fields, dict):
        raise ValueError(f"{where} must be an object with {', '.join(_FIELDS)}")
    for name in fields:
        if name not in _FIELDS:
            hint = suggestion(name, _FIELDS, otherwise=f"known: {', '.join(_FIELDS)}")
            raise ValueError(f"{where}: unknown field {name!r}{hint}")
    base = DEFAULT_LIMITS.get(service)
    if base is None and set(fields) != set(_FIELDS):
        missing = ", ".join(f for f in _FIELDS if f not in fields)
        raise ValueError(f"{where}: a service without defaults needs all three fields ({missing})")
    merged: dict[str, Any] = {f: fields.get(f, getattr(base, f, None)) for f in _FIELDS}
    for name in ("size", "refill_per_second"):
        if isinstance(merged[name], bool) or not isinstance(merged[name], int | float):
            raise ValueError(f"{where}: {name} must be a number")
    if isinstance(merged["max_in_flight"], bool) or not isinstance(merged["max_in_flight"], int):
        raise ValueError(f"{where}: max_in_flight must be a whole number")
    try:
        return BucketLimits(
            float(merged["size"]), float(merged["refill_per_second"]), merged["max_in_flight"]
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
