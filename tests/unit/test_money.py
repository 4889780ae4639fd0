"""Money without a database: ISO 4217 amounts, payload rules, provider keys,
the payment sandbox and which payment provider a process gets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from queue_service.core.money import currency_code, exponent, format_minor, provider_key
from queue_service.errors import PermanentError
from queue_service.processors.payments import PaymentPayload, process_key, retry_key
from queue_service.processors.refunds import PartialRefundPayload, full_key, partial_key
from queue_service.providers.payments import build_payment_provider
from queue_service.providers.sandbox import PaymentSandbox
from queue_service.providers.status import kind_status
from queue_service.settings import Settings

GOOD = {
    "order_id": "o1",
    "user_id": "u1",
    "amount": 1050,
    "currency": "usd",
    "payment_method_id": "pm_card_visa",
}


def test_currencies_are_iso_4217_with_their_minor_unit_exponents() -> None:
    assert currency_code("eur") == "EUR"
    assert (exponent("USD"), exponent("JPY"), exponent("KWD")) == (2, 0, 3)
    assert format_minor(1050, "USD") == "10.50 USD"
    assert format_minor(1050, "JPY") == "1050 JPY"
    assert format_minor(1050, "KWD") == "1.050 KWD"
    with pytest.raises(ValueError, match="ISO 4217"):
        currency_code("XYZ")


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 10.5},
        {"amount": "1050"},
        {"amount": 0},
        {"amount": -1},
        {"currency": "dollars"},
        {"order_id": ""},
        {"surprise": True},
        {"customer_email": "not an address"},
    ],
)
def test_a_payment_payload_refuses_what_is_not_integer_cents_in_iso_4217(
    change: dict[str, object],
) -> None:
    with pytest.raises(ValidationError):
        PaymentPayload.model_validate({**GOOD, **change})


def test_derived_keys_follow_spec_and_keep_partial_refunds_of_other_amounts_apart() -> None:
    p = PaymentPayload.model_validate(GOOD)
    assert process_key(p) == "payment:u1:o1:1050"
    assert retry_key(p) == "payment:u1:o1:1050:retry:pm_card_visa"
    a = PartialRefundPayload(order_id="o1", transaction_id="pi_1", amount=300)
    b = PartialRefundPayload(order_id="o1", transaction_id="pi_1", amount=200)
    assert full_key(a) == "refund:pi_1:o1"
    assert partial_key(a) != partial_key(b)
    with pytest.raises(ValidationError):
        PartialRefundPayload(order_id="o1", transaction_id="re_1", amount=300)


def test_provider_keys_are_stable_opaque_and_scoped_by_tenant_and_family() -> None:
    key = provider_key("t1", "payment", "payment:u1:o1:1050")
    assert key == provider_key("t1", "payment", "payment:u1:o1:1050")
    assert key.startswith("qs_") and "u1" not in key and len(key) < 255
    assert key != provider_key("t2", "payment", "payment:u1:o1:1050")
    assert key != provider_key("t1", "refund", "payment:u1:o1:1050")


async def test_the_sandbox_declines_its_declining_test_cards_and_charges_good_ones() -> None:
    sandbox = PaymentSandbox()
    with pytest.raises(PermanentError) as declined:
        await sandbox.create_and_confirm(
            amount=1050,
            currency="USD",
            payment_method="pm_card_visa_chargeDeclined",
            metadata={"order_id": "o1"},
            idempotency_key="k1",
        )
    assert declined.value.reason == "card_declined"
    paid = await sandbox.create_and_confirm(
        amount=1050,
        currency="USD",
        payment_method="pm_card_visa",
        metadata={"order_id": "o2"},
        idempotency_key="k2",
    )
    assert paid.paid and paid.amount_received == 1050
    again = await sandbox.create_and_confirm(
        amount=1050,
        currency="USD",
        payment_method="pm_card_visa",
        metadata={"order_id": "o2"},
        idempotency_key="k2",
    )
    assert again == paid  # a replay, like Stripe's
    assert await sandbox.search_payments({"order_id": "o2"}) == [paid]
    refund = await sandbox.refund(
        transaction_id=paid.id, amount=50, metadata={}, idempotency_key="r1"
    )
    assert await sandbox.list_refunds(paid.id) == [refund]


def test_without_a_stripe_key_the_provider_is_the_development_sandbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    monkeypatch.delenv("STRIPE_SECRET_KEY_FILE", raising=False)
    settings = Settings(database_url=None)
    assert kind_status(settings, "payments").describe() == "development: payment sandbox"
    assert isinstance(build_payment_provider(settings), PaymentSandbox)
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_x")
    assert kind_status(settings, "payments").describe() == "stripe"
