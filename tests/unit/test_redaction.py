"""Redaction rules: what is masked in free text and structured fields, and the
guarantees the logger relies on (never raises, idempotent, nothing leaks)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import string
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.provisional import domains

from queue_service.observability.redaction import (
    OMITTED,
    REDACTED,
    redact_mapping,
    redact_text,
    redact_value,
)

# --- table tests: free text ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("john@example.com", "j***@example.com"),
        ("mail Jane.Doe+tix@mail.example.co.uk now", "mail J***@mail.example.co.uk now"),
        ("<a@b.io>, 'c@d.io'", "<a***@b.io>, 'c***@d.io'"),
        ("user@localhost", "user@localhost"),
    ],
)
def test_emails_in_text_keep_first_character_and_domain(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sms to +14155550123 sent", "sms to +1415***0123 sent"),
        ("+1 (415) 555-0123", "+1415***0123"),
        ("+44 20 7946 0958", "+4420***0958"),
        ("+35812345", "+3***2345"),
        ("+1234567", "+1234567"),
        ("(415) 555-0123", "415***0123"),
    ],
)
def test_international_phones_hide_the_middle_digits(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4242424242424242", "****4242"),
        ("card 4242 4242 4242 4242 declined", "card ****4242 declined"),
        ("4000-0566-5566-5556", "****5556"),
        ("amex 3782 822463 10005", "amex ****0005"),
        ("visa13 4222222222222.", "visa13 ****2222."),
        ("order 1234 4242424242424242", "order 1234 ****4242"),
        ("+1 4242 4242 4242 4242", "+1 ****4242"),
    ],
)
def test_luhn_valid_card_numbers_keep_last_four(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_masked_card_digits_do_not_seed_a_new_card_on_a_second_pass() -> None:
    # "4242" + the groups after it is itself a valid card number.
    once = redact_text("4242424242424242 4242 4242 4242")
    assert once == "****4242 4242 4242 4242"
    assert redact_text(once) == once


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424241",  # fails the Luhn check
        "job 123456789012 retried 3 times",
        "id4242424242424242",  # glued to letters: part of an identifier
        "0x52908400098527886E0F7030069857D2E4169EE7",
        "tx 0x88df016429689c079f3b2f6ad39fa052532c56795b733da78a91ebe6a713944b",
        "job 123e4567-e89b-12d3-a456-426614174000",
        "at 2024-01-15T12:00:00.123456Z took 3.25s",
        "the ticket bearer changed seats",
    ],
)
def test_ordinary_identifiers_and_numbers_are_left_alone(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dGVzdA-_", "[jwt]"),
        ("token=eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", "token=[redacted]"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig ok", "jwt [jwt] ok"),
    ],
)
def test_jwts_are_replaced_whole(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk_live_51H8abcDEFghi", "key sk_live_[redacted]"),
        ("sk_test_4eC39HqLyjWDarjtT1zdp7dc", "sk_test_[redacted]"),
        ("rk_live_abc123 rk_test_z", "rk_live_[redacted] rk_test_[redacted]"),
        (
            "STRIPE_WEBHOOK=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "STRIPE_WEBHOOK=whsec_[redacted]",
        ),
        ("sk_0123456789abcdefXYZ", "sk_[redacted]"),
        ("disk_usage and task_id", "disk_usage and task_id"),
    ],
)
def test_provider_secrets_keep_only_their_prefix(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def", "Authorization: Bearer [redacted]"),
        ("authorization=Basic dXNlcjpwdw==", "authorization=Basic [redacted]"),
        ("{'Authorization': 'tok123'}", "{'Authorization': '[redacted]'}"),
        ("sent with bearer 9f8e7d6c5b4a", "sent with bearer [redacted]"),
        ("password=hunter2 host=db", "password=[redacted] host=db"),
        ('{"api_key": "abc", "n": 1}', '{"api_key": "[redacted]", "n": 1}'),
        ("X-Api-Key: zzz", "X-Api-Key: [redacted]"),
        (
            "refresh_token: r1 client_secret=s2",
            "refresh_token: [redacted] client_secret=[redacted]",
        ),
    ],
)
def test_credentials_after_a_secret_name_are_redacted(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://queue:s3cr3t@db:5432/app", "postgresql://queue:***@db:5432/app"),
        ("postgres://u:p@ss@h/db?sslmode=require", "postgres://u:***@h/db?sslmode=require"),
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgresql://queue@db/app", "postgresql://queue@db/app"),
    ],
)
def test_uri_passwords_are_replaced(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_non_string_input_to_redact_text_is_coerced_not_raised() -> None:
    assert redact_text(b"mail john@example.com") == "mail j***@example.com"  # type: ignore[arg-type]
    assert redact_text(None) == "None"  # type: ignore[arg-type]


# --- table tests: structured fields -------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "db_password",
        "secret",
        "client_secret",
        "stripe_webhook_secret",
        "token",
        "access_token",
        "accessToken",
        "Authorization",
        "api_key",
        "X-Api-Key",
        "APIKey",
        "private_key",
        "wallet_private_key",
        "mnemonic",
        "cvc",
        "cookie",
    ],
)
def test_secret_named_fields_are_redacted_whatever_their_value(key: str) -> None:
    assert redact_value(key, "hunter2") == REDACTED
    assert redact_value(key, 123456) == REDACTED
    assert redact_value(key, {"nested": "x"}) == REDACTED


def test_secret_fields_keep_none_and_booleans_which_reveal_nothing() -> None:
    assert redact_value("token", None) is None
    assert redact_value("has_token", True) is True


@pytest.mark.parametrize("key", ["token_id", "max_tokens", "idempotency_key", "job_id"])
def test_lookalike_keys_are_not_secrets(key: str) -> None:
    assert redact_value(key, 42) == 42


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("email", "john@example.com", "j***@example.com"),
        ("customer_email", "Ann@Example.org", "A***@Example.org"),
        ("to", "ops@localhost", "o***@localhost"),
        ("to", "running", "running"),
        ("to", ["a@b.io", "c@d.io"], ["a***@b.io", "c***@d.io"]),
        ("phone", "415-555-0123", "415***0123"),
        ("customer_phone", "+14155550123", "+1415***0123"),
        ("msisdn", 4155550123, "415***0123"),
    ],
)
def test_contact_fields_are_masked(key: str, value: object, expected: object) -> None:
    assert redact_value(key, value) == expected


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "wallet_address",
            "0x52908400098527886E0F7030069857D2E4169EE7",
            "0x52…9EE7",
        ),
        ("buyer_wallet", "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV", "7EcD…FLtV"),
        ("payment_method_id", "pm_1NqRLmKZ0dZRqLEKab12cd34", "pm_1…cd34"),
        ("payment_intent_id", "pi_3MtwBwLkdIwHu7ix28a3tqPa", "pi_3…tqPa"),
        ("transaction_id", "txn_1234", REDACTED),
        ("card", "card_1MvN3xLkdIwHu7ixAbCd", "card…AbCd"),
        ("card", "4242424242424242", "****4242"),
        ("card_number", "4242 4242 4242 4242", "****4242"),
    ],
)
def test_identifier_fields_are_truncated(key: str, value: str, expected: str) -> None:
    assert redact_value(key, value) == expected


@pytest.mark.parametrize(
    "key", ["amount", "refund_amount", "amount_currency", "fee_cents", "Amount"]
)
def test_amount_fields_are_dropped_unless_kept_for_debug(key: str) -> None:
    assert redact_value(key, 1500) is OMITTED
    assert redact_value(key, 1500, keep_amounts=True) == 1500
    assert redact_mapping({key: 1500, "job_id": 7}) == {"job_id": 7}
    assert redact_mapping({key: 1500}, keep_amounts=True) == {key: 1500}


def test_nested_structures_are_redacted_recursively() -> None:
    event = {
        "customer": {"email": "john@example.com", "password": "pw", "total_amount": 10},
        "items": [{"card": "4242424242424242"}, ("+14155550123", b"sk_live_abc")],
        "note": "refund for jane@example.org",
        "john@example.com": 1,
        "when": dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        7: None,
    }
    assert redact_mapping(event) == {
        "customer": {"email": "j***@example.com", "password": REDACTED},
        "items": [{"card": "****4242"}, ("+1415***0123", "sk_live_[redacted]")],
        "note": "refund for j***@example.org",
        "j***@example.com": 1,
        "when": dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        "7": None,
    }


@dataclasses.dataclass
class _Customer:
    email: str
    api_key: str
    amount: int


def test_dataclasses_are_redacted_field_by_field() -> None:
    assert redact_value("customer", _Customer("john@example.com", "k", 5)) == {
        "email": "j***@example.com",
        "api_key": REDACTED,
    }


def test_cycles_and_deep_nesting_end_in_placeholders() -> None:
    loop: list[object] = []
    loop.append(loop)
    assert redact_value("x", loop) == ["[cycle]"]
    deep: object = "leaf"
    for _ in range(1000):
        deep = [deep]
    flattened = redact_value("x", deep)
    for _ in range(31):
        assert isinstance(flattened, list)
        flattened = flattened[0]
    assert flattened == ["[too deep]"]


def test_shared_but_acyclic_references_are_not_cycles() -> None:
    shared = {"email": "a@b.io"}
    assert redact_value("x", [shared, shared]) == [{"email": "a***@b.io"}] * 2


class _UnprintableKey:
    """Hashable, so usable as a dict key, but impossible to turn into text."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class _Hostile(_UnprintableKey):
    """Not even comparable or hashable."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    def __hash__(self) -> int:
        raise RuntimeError("no hash")


class _BrokenMapping(Mapping[str, object]):
    def __getitem__(self, key: str) -> object:
        raise RuntimeError("no item")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("no iter")

    def __len__(self) -> int:
        return 1


class _BrokenModel:
    def model_dump(self) -> dict[str, object]:
        raise RuntimeError("no dump")


def _released_view() -> memoryview:
    view = memoryview(b"abc")
    view.release()
    return view


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="none"),
        pytest.param(b"\xff\xfe raw bytes", id="invalid-utf8"),
        pytest.param(_Hostile(), id="hostile"),
        pytest.param(_BrokenMapping(), id="broken-mapping"),
        pytest.param(_BrokenModel(), id="broken-model"),
        pytest.param(_released_view(), id="released-memoryview"),
        pytest.param(10**5000, id="int-too-long-for-str"),
        pytest.param({_UnprintableKey(): 1}, id="unprintable-key"),
        pytest.param([_Hostile(), {"k": _Hostile()}], id="nested-hostile"),
        pytest.param(object(), id="object"),
        pytest.param(float("nan"), id="nan"),
        pytest.param(uuid.UUID(int=0), id="uuid"),
    ],
)
@pytest.mark.parametrize("key", ["note", "transaction_id", "phone", "email", "amount", "token"])
def test_redaction_never_raises_on_hostile_values(key: str, value: object) -> None:
    redact_value(key, value)
    redact_value(key, value, keep_amounts=True)
    redact_mapping({key: value, "other": value})


def test_broken_mapping_becomes_a_placeholder_not_an_exception() -> None:
    assert redact_value("x", _BrokenMapping()) == "[unloggable]"
    assert redact_mapping(_BrokenMapping()) == {"redaction_error": "[unloggable]"}


@pytest.mark.parametrize(
    "text",
    [
        "a" * 200_000,
        "a-" * 100_000,
        "a*" * 100_000 + "@",
        "eyJ" * 70_000,
        "1 " * 100_000,
        "+1" * 100_000,
        "x://u:" * 40_000,
        "a@" * 100_000,
        "password-" * 25_000,
        "bearer " + "a" * 200_000,
        "4" * 200_000,
    ],
)
def test_pathological_input_is_redacted_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    redact_text(text)
    assert time.perf_counter() - started < 2.0


# --- property tests -----------------------------------------------------------------

_ALNUM = string.ascii_letters + string.digits
_LOCAL_ALPHABET = _ALNUM + ".!#$%&+?^_~-"
# Without "_" or ".", no other rule (secrets, JWTs) can claim part of the address.
_PLAIN_LOCAL_ALPHABET = _ALNUM + "!#$%&+?^~-"
_B64URL = _ALNUM + "_-"

emails = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.text(_LOCAL_ALPHABET, min_size=1, max_size=20),
    domains(),
)
jwts = st.builds(
    lambda header, payload, signature: f"eyJ{header}.{payload}.{signature}",
    st.text(_B64URL, min_size=1, max_size=30),
    st.text(_B64URL, min_size=1, max_size=30),
    st.text(_B64URL, max_size=30),
)
secrets = st.builds(
    lambda prefix, body: prefix + body,
    st.sampled_from(["sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"]),
    st.text(_ALNUM, min_size=1, max_size=40),
)
phones = st.builds(
    lambda first, rest: f"+{first}{rest}",
    st.integers(1, 9),
    st.text("0123456789", min_size=7, max_size=14),
)


def _luhn_complete(payload: list[int]) -> str:
    total = 0
    for position, digit in enumerate(reversed(payload)):
        value = digit * 2 if position % 2 == 0 else digit
        total += value - 9 if value > 9 else value
    return "".join(map(str, payload)) + str((10 - total % 10) % 10)


@st.composite
def cards(draw: st.DrawFn) -> tuple[str, str]:
    """A Luhn-valid card number, as (digits, how it is written)."""
    length = draw(st.integers(13, 19))
    digits = _luhn_complete(
        draw(st.lists(st.integers(0, 9), min_size=length - 1, max_size=length - 1))
    )
    separator = draw(st.sampled_from(["", " ", "-"]))
    written = separator.join(digits[i : i + 4] for i in range(0, len(digits), 4))
    return digits, written


card_then_digit_groups = st.builds(
    lambda card, groups: f"{card[1]} {' '.join(groups)}",
    cards(),
    st.lists(st.text("0123456789", min_size=1, max_size=5), min_size=1, max_size=5),
)
noise = st.text(max_size=30)
tricky_text = st.text("0123456789 +-*@._:=/()eyJskrlivetwhBarpsdo", max_size=60)
sensitive = st.one_of(emails, jwts, secrets, phones, cards().map(lambda card: card[1]))
mixed_text = st.lists(
    st.one_of(noise, tricky_text, sensitive, card_then_digit_groups), max_size=6
).map(" ".join)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(max_size=20),
    st.datetimes(),
    st.uuids(),
    mixed_text,
)
field_names = st.one_of(
    st.sampled_from(
        [
            "email",
            "to",
            "phone",
            "card",
            "wallet_address",
            "amount",
            "fee_cents",
            "token",
            "password",
            "note",
            "job_id",
            "items",
            "Authorization",
            "payment_intent_id",
        ]
    ),
    st.text(max_size=12),
)
nested_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(field_names, children, max_size=4),
    ),
    max_leaves=25,
)


@given(st.one_of(st.text(), mixed_text))
@settings(max_examples=500)
def test_redact_text_is_idempotent(text: str) -> None:
    once = redact_text(text)
    assert redact_text(once) == once


@given(field_names, nested_values, st.booleans())
@settings(max_examples=500)
def test_redact_value_never_raises_and_is_idempotent(
    key: str, value: object, keep_amounts: bool
) -> None:
    once = redact_value(key, value, keep_amounts=keep_amounts)
    assert redact_value(key, once, keep_amounts=keep_amounts) == once


@given(st.dictionaries(field_names, nested_values, max_size=6), st.booleans())
def test_redact_mapping_is_idempotent(event: dict[str, Any], keep_amounts: bool) -> None:
    once = redact_mapping(event, keep_amounts=keep_amounts)
    assert redact_mapping(once, keep_amounts=keep_amounts) == once


@given(noise, st.text(_PLAIN_LOCAL_ALPHABET, min_size=1, max_size=20), domains(), noise)
def test_embedded_email_keeps_only_first_character_of_local_part(
    before: str, local: str, domain: str, after: str
) -> None:
    redacted = redact_text(f"{before} {local}@{domain} {after}")
    assert f" {local[0]}***@{domain} " in redacted
    assert f"{local}@{domain}" not in redacted


@given(noise, cards(), noise)
def test_embedded_card_never_survives(before: str, card: tuple[str, str], after: str) -> None:
    digits, written = card
    redacted = redact_text(f"{before} {written} {after}")
    assert written not in redacted
    assert digits not in redacted


@given(noise, jwts, noise)
def test_embedded_jwt_never_survives(before: str, jwt: str, after: str) -> None:
    assert jwt not in redact_text(f"{before} {jwt} {after}")


@given(noise, secrets, noise)
def test_embedded_secret_never_survives(before: str, secret: str, after: str) -> None:
    assert secret not in redact_text(f"{before} {secret} {after}")


@given(noise, phones, noise)
def test_embedded_phone_never_survives(before: str, phone: str, after: str) -> None:
    assert phone not in redact_text(f"{before} {phone} {after}")


@given(noise, sensitive, noise, field_names)
def test_sensitive_text_under_any_key_never_survives(
    before: str, secret: str, after: str, key: str
) -> None:
    redacted = redact_value(key, {"nested": [f"{before} {secret} {after}"]})
    assert secret not in repr(redacted)


@given(st.text(alphabet=st.characters(exclude_categories=["Nd"], exclude_characters="@")))
def test_text_without_digits_or_at_signs_passes_unchanged(text: str) -> None:
    assert redact_text(text) == text
