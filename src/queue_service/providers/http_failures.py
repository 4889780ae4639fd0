"""How an HTTP answer or a transport failure of an outside service becomes a
job error: permanent (with the SPEC §3 reason), retryable, or a snooze."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import httpx

from queue_service.errors import JobError, PermanentError, RetryableError, Snooze

# A 429 without Retry-After: wait a little, without using an attempt.
DEFAULT_RATE_LIMIT_SNOOZE_SECONDS = 2.0
# A Retry-After further out than this is taken as this: a typo or a hostile
# value must not park a job for a day.
MAX_RETRY_AFTER_SECONDS = 300.0

_PERMANENT_REASONS = {
    400: "invalid_request",
    401: "authentication",
    403: "forbidden",
    404: "not_found",
    405: "invalid_request",
    409: "conflict",
    410: "not_found",
    413: "invalid_request",
    415: "invalid_request",
    422: "validation",
}


def retry_after_seconds(
    headers: Mapping[str, str],
    *,
    bounds: tuple[float, float] = (0.0, MAX_RETRY_AFTER_SECONDS),
    now: float | None = None,
) -> float | None:
    """Retry-After as seconds from now (delta-seconds or an HTTP date) within
    ``bounds``; None when absent or unreadable."""
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    low, high = bounds
    return min(max(seconds, low), high)


def failure_for_status(response: httpx.Response, service: str) -> JobError | None:
    """None for a 2xx answer; else the job error its status code means."""
    code = response.status_code
    if 200 <= code < 300:
        return None
    if code == 429:
        delay = retry_after_seconds(response.headers)
        return Snooze(
            DEFAULT_RATE_LIMIT_SNOOZE_SECONDS if delay is None else delay,
            f"{service} rate limited the call (HTTP 429)",
        )
    if code >= 500 or code == 408:
        return RetryableError(
            f"{service} answered HTTP {code}", delay_seconds=retry_after_seconds(response.headers)
        )
    reason = _PERMANENT_REASONS.get(code, "invalid_request")
    return PermanentError(f"{service} refused the call: HTTP {code} ({reason})", reason=reason)


def failure_for_transport(exc: httpx.HTTPError, service: str) -> RetryableError:
    """A timeout, refused connection or broken stream: nothing was decided, try again."""
    return RetryableError(f"{service} unreachable: {type(exc).__name__}")
