"""Retry-After, one parser for every outside service: delta-seconds or an HTTP
date, within the caller's bounds; anything else is no answer."""

from __future__ import annotations

from email.utils import formatdate

from queue_service.providers.http_failures import retry_after_seconds

NOW = 1_700_000_000.0


def test_delta_seconds_and_http_dates_are_read_and_capped() -> None:
    assert retry_after_seconds({"retry-after": " 7 "}) == 7.0
    assert retry_after_seconds({"retry-after": "86400"}) == 300.0
    date = formatdate(NOW + 30, usegmt=True)
    assert retry_after_seconds({"retry-after": date}, now=NOW) == 30.0
    assert retry_after_seconds({"retry-after": formatdate(NOW - 30, usegmt=True)}, now=NOW) == 0


def test_a_callers_bounds_apply() -> None:
    bounds = (1.0, 3600.0)
    assert retry_after_seconds({"retry-after": "0"}, bounds=bounds) == 1.0
    assert retry_after_seconds({"retry-after": "86400"}, bounds=bounds) == 3600.0


def test_absent_or_unreadable_is_none() -> None:
    for value in ("", "soon", "-5", "1.5"):
        assert retry_after_seconds({"retry-after": value}) is None
    assert retry_after_seconds({}) is None
