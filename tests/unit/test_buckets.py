"""Token-bucket maths and the outbound limits setting (core/buckets.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from queue_service.core.buckets import (
    DEFAULT_LIMITS,
    BucketLimits,
    parse_limits,
    refilled,
    seconds_until_token,
    window_allowance,
)
from queue_service.settings import Settings

sizes = st.floats(min_value=1, max_value=10_000)
rates = st.floats(min_value=0.001, max_value=10_000)
tokens_of = st.floats(min_value=-5, max_value=10_000)
times = st.floats(min_value=-1_000, max_value=1_000_000)


@given(tokens_of, sizes, rates, times)
def test_a_refill_never_exceeds_the_size_and_never_takes_tokens_away(
    tokens: float, size: float, rate: float, elapsed: float
) -> None:
    after = refilled(min(tokens, size), size, rate, elapsed)
    assert after <= size
    assert after >= min(tokens, size)


@given(tokens_of, sizes, rates, st.floats(0, 1_000), st.floats(0, 1_000))
def test_refilling_in_two_steps_is_refilling_once(
    tokens: float, size: float, rate: float, a: float, b: float
) -> None:
    start = min(tokens, size)
    assert refilled(refilled(start, size, rate, a), size, rate, b) == pytest.approx(
        refilled(start, size, rate, a + b), rel=1e-9, abs=1e-6
    )


@given(st.floats(min_value=-5, max_value=0.999), rates)
def test_after_the_time_until_the_next_token_there_is_one(tokens: float, rate: float) -> None:
    wait = seconds_until_token(tokens, rate)
    assert wait > 0
    assert refilled(tokens, 10, rate, wait) == pytest.approx(1.0, rel=1e-9, abs=1e-9)


def test_a_bucket_with_a_token_needs_no_wait() -> None:
    assert seconds_until_token(1.0, 5) == 0.0
    assert seconds_until_token(0.5, 5) == pytest.approx(0.1)


def test_a_window_admits_a_full_bucket_and_what_refills_during_it() -> None:
    assert window_allowance(BucketLimits(10, 20, 5), 0.5) == 20
    assert window_allowance(BucketLimits(25, 5, 10), 0) == 25


def test_the_defaults_are_the_specs_and_a_setting_overrides_fields() -> None:
    limits = parse_limits(
        '{"stripe": {"max_in_flight": 3}, "maps": {"size": 2, '
        '"refill_per_second": 0.5, "max_in_flight": 1}}'
    )
    assert DEFAULT_LIMITS["stripe"] == BucketLimits(25, 5, 10)
    assert DEFAULT_LIMITS["solana"] == BucketLimits(10, 2, 5)
    assert DEFAULT_LIMITS["internal"] == BucketLimits(100, 50, 50)
    assert limits["stripe"] == BucketLimits(25, 5, 3)
    assert limits["maps"] == BucketLimits(2, 0.5, 1)
    assert {"twilio", "smtp", "webhooks"} <= set(limits)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1]", "must be a JSON object"),
        ("{", "is not JSON"),
        ('{"stripe": {"refil_per_second": 3}}', "did you mean 'refill_per_second'"),
        ('{"stripe": {"size": 0}}', "size must be at least 1"),
        ('{"stripe": {"refill_per_second": 0}}', "refill_per_second must be above 0"),
        ('{"stripe": {"max_in_flight": 1.5}}', "max_in_flight must be a whole number"),
        ('{"maps": {"size": 3}}', "needs all three fields (refill_per_second, max_in_flight)"),
        ('{"Stripe!": {"size": 3}}', "a service name is lower case"),
        ('{"read": {"size": 3}}', "names an inbound rate limit"),
    ],
)
def test_a_bad_limits_setting_is_refused_at_start_up_saying_how_to_fix_it(
    text: str, message: str
) -> None:
    with pytest.raises(ValidationError, match="QUEUE_SERVICE_OUTBOUND_LIMITS") as caught:
        Settings(queue_service_outbound_limits=text)
    assert message in str(caught.value)
