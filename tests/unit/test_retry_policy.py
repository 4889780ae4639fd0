"""Backoff strategies (SPEC §3), exact with an injected jitter source."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from queue_service.core.retry import (
    DEFAULT_RETRY,
    EMAIL_RETRY,
    MINT_RETRY,
    MONEY_RETRY,
    WEBHOOK_RETRY,
    RetryPolicy,
)


def no_jitter() -> float:
    return 1.0  # the top of the jitter range: delay * (0.5 + 1/2) = delay


@pytest.mark.parametrize(
    ("policy", "delays"),
    [
        (MONEY_RETRY, [1, 2, 4, 8, 16, 32, 60, 60]),
        (MINT_RETRY, [5, 10, 20, 40, 80, 160, 300, 300]),
        (EMAIL_RETRY, [2, 4, 6, 8, 10, 10]),
        (WEBHOOK_RETRY, [1, 1, 2, 3, 5, 8, 13, 21, 30, 30]),
        (DEFAULT_RETRY, [2, 4, 8, 16, 32, 60]),
        (RetryPolicy(3, "fixed", 7, 7, jitter=False), [7, 7, 7]),
    ],
)
def test_each_strategy_waits_exactly_its_sequence_up_to_its_cap(
    policy: RetryPolicy, delays: list[float]
) -> None:
    assert [policy.delay(n, no_jitter) for n in range(1, len(delays) + 1)] == delays


def test_the_spec_attempt_budgets() -> None:
    assert (
        MONEY_RETRY.max_attempts,
        MINT_RETRY.max_attempts,
        EMAIL_RETRY.max_attempts,
        WEBHOOK_RETRY.max_attempts,
        DEFAULT_RETRY.max_attempts,
    ) == (5, 3, 3, 4, 3)
    assert not EMAIL_RETRY.jitter and MONEY_RETRY.jitter


def test_jitter_keeps_between_half_and_all_of_the_delay() -> None:
    assert MONEY_RETRY.delay(3, lambda: 0.0) == 2.0
    assert MONEY_RETRY.delay(3, lambda: 0.5) == 3.0


@given(attempt=st.integers(1, 10_000), factor=st.floats(0, 0.999999))
def test_no_attempt_number_overflows_or_exceeds_the_cap(attempt: int, factor: float) -> None:
    for policy in (MONEY_RETRY, MINT_RETRY, EMAIL_RETRY, WEBHOOK_RETRY, DEFAULT_RETRY):
        delay = policy.delay(attempt, lambda: factor)
        assert 0 <= delay <= policy.max_seconds


def test_invalid_policies_are_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(0)
    with pytest.raises(ValueError, match="base_seconds"):
        RetryPolicy(3, "linear", 10, 5)
    with pytest.raises(ValueError, match="1-based"):
        MONEY_RETRY.raw_delay(0)
