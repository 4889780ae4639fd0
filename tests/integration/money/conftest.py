"""Fixtures of the money tests: the Stripe-shaped server and a runtime whose
payment provider is the real Stripe adapter pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from queue_service.runtime.service import Runtime, open_runtime
from queue_service.testing.stripe import FakeStripe
from tests.integration.conftest import make_settings
from tests.support.money import TEST_STRIPE_KEY


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe().start()
    yield fake
    fake.stop()


@pytest.fixture
async def runtime(
    database_url: str, fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Runtime]:
    """Replaces the engine's ``runtime`` fixture (so ``run_worker`` uses it)."""
    monkeypatch.setenv("STRIPE_SECRET_KEY", TEST_STRIPE_KEY)
    settings = make_settings(database_url, stripe_api_base=fake_stripe.url)
    async with open_runtime(settings, database_url) as rt:
        yield rt
