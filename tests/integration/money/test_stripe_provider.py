"""The Stripe adapter (stripe SDK on HTTPX) against the Stripe-shaped server:
each failure becomes the job error of docs/providers/stripe.md's table."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from queue_service.errors import JobError, PermanentError, RetryableError, Snooze
from queue_service.providers.stripe import StripeProvider
from queue_service.testing.stripe import FakeStripe
from tests.support.money import TEST_STRIPE_KEY


@pytest.fixture
async def stripe_at(fake_stripe: FakeStripe) -> AsyncIterator[StripeProvider]:
    provider = StripeProvider(SecretStr(TEST_STRIPE_KEY), api_base=fake_stripe.url)
    yield provider
    await provider.aclose()


async def charge(provider: StripeProvider, key: str = "k1", method: str = "pm_card_visa") -> object:
    return await provider.create_and_confirm(
        amount=1050,
        currency="USD",
        payment_method=method,
        metadata={"order_id": "o1"},
        idempotency_key=key,
    )


async def failure(provider: StripeProvider, **kwargs: str) -> JobError:
    with pytest.raises(JobError) as caught:
        await charge(provider, **kwargs)
    return caught.value


async def test_stripe_failures_map_to_permanent_retryable_or_snooze(
    stripe_at: StripeProvider, fake_stripe: FakeStripe
) -> None:
    declined = await failure(stripe_at, method="pm_card_chargeDeclined")
    assert isinstance(declined, PermanentError) and declined.reason == "card_declined"
    assert "insufficient_funds" in str(
        await failure(stripe_at, key="k2", method="pm_card_chargeDeclinedInsufficientFunds")
    )

    fake_stripe.fail_next(1, status=500)
    assert isinstance(await failure(stripe_at, key="k3"), RetryableError)
    fake_stripe.fail_next(1, status=429, retry_after=7)
    limited = await failure(stripe_at, key="k3")
    assert isinstance(limited, Snooze) and limited.delay_seconds == 7
    fake_stripe.fail_next(1, status=401)
    auth = await failure(stripe_at, key="k3")
    assert isinstance(auth, PermanentError) and auth.reason == "authentication"
    fake_stripe.fail_next(1, status=403)
    forbidden = await failure(stripe_at, key="k3")
    assert isinstance(forbidden, PermanentError) and forbidden.reason == "forbidden"

    await charge(stripe_at, key="k4")
    with pytest.raises(PermanentError) as conflict:  # same key, other parameters
        await stripe_at.create_and_confirm(
            amount=999,
            currency="USD",
            payment_method="pm_card_visa",
            metadata={"order_id": "o1"},
            idempotency_key="k4",
        )
    assert conflict.value.reason == "idempotency_conflict"
    with pytest.raises(PermanentError) as missing:
        await stripe_at.retrieve("pi_missing")
    assert missing.value.reason == "not_found"


async def test_an_unreachable_stripe_is_retryable() -> None:
    provider = StripeProvider(SecretStr(TEST_STRIPE_KEY), api_base="http://127.0.0.1:9")
    try:
        with pytest.raises(RetryableError, match="unreachable"):
            await provider.retrieve("pi_1")
    finally:
        await provider.aclose()


async def test_the_same_key_replays_the_first_answer_and_a_refund_lists_back(
    stripe_at: StripeProvider, fake_stripe: FakeStripe
) -> None:
    first = await charge(stripe_at)
    assert await charge(stripe_at) == first
    assert fake_stripe.charge_count == 1
    [found] = await stripe_at.search_payments({"order_id": "o1"})
    assert found == first
    refund = await stripe_at.refund(
        transaction_id=found.id, amount=50, metadata={"idempotency_key": "r"}, idempotency_key="r"
    )
    assert await stripe_at.list_refunds(found.id) == [refund]
