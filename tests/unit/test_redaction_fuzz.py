"""Fuzzing the redactor with every kind of sensitive value issue 8 names:
generated emails, E.164 and national phone numbers, Luhn-valid cards (in one
run, with spaces or dashes), JWTs and sk_live_/sk_test_/whsec_ secrets,
embedded in arbitrary text and in nested JSON; none may survive."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from queue_service.observability.redaction import redact_mapping, redact_text, redact_value
from tests.support.sensitive import (
    national_phones,
    sensitive_values,
    survives,
)

noise = st.text(max_size=30)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call (415) 555-0123 now", "call 415***0123 now"),
        ("415-555-0123", "415***0123"),
        ("1-415-555-0123", "1415***0123"),
        ("415.555.0123", "415***0123"),
        ("020 7946 0958", "0207***0958"),
        ("01 23 45 67 89", "012***6789"),
        ("06.12.34.56.78", "061***5678"),
        ("tel 07700900123", "tel 0770***0123"),
        ("(030) 12345678", "0301***5678"),
    ],
)
def test_national_phones_hide_the_middle_digits(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "at 2024-01-15 10:30:00 and 15.01.2024",
        "took 0.5 0.25 0.125 s",
        "from 192.168.100.200 port 5432 pid 12345",
        "job 123e4567-e89b-12d3-a456-426614174000",
        "v1.22.333 build 20240115",
        "order 4155550123 of 3",
    ],
)
def test_dates_addresses_and_counts_are_not_taken_for_national_phones(text: str) -> None:
    assert redact_text(text) == text


@given(noise, sensitive_values, noise)
@settings(max_examples=400)
def test_no_sensitive_value_survives_in_free_text(before: str, value: str, after: str) -> None:
    assume(not survives(value, f"{before} {after}"))  # noise may hold the same digits
    redacted = redact_text(f"{before} {value} {after}")
    assert not survives(value, redacted), redacted
    assert redact_text(redacted) == redacted


@given(noise, national_phones, noise)
def test_no_national_phone_survives_in_free_text(before: str, phone: str, after: str) -> None:
    assume(not survives(phone, f"{before} {after}"))
    assert not survives(phone, redact_text(f"{before} {phone} {after}"))


def _embed(value: str) -> st.SearchStrategy[str]:
    # Noise that happens to hold the value's digits would make the check meaningless.
    return st.builds(lambda b, a: f"{b} {value} {a}", noise, noise).filter(
        lambda text: not survives(value, text.replace(value, " ", 1))
    )


json_keys = st.one_of(
    st.sampled_from(["message", "error", "detail", "customer", "note", "body", "to", "data"]),
    st.text(max_size=10),
)


def _nested_with(value: str) -> st.SearchStrategy[Any]:
    """A JSON document with ``value`` (inside some text) at one leaf, under
    arbitrary keys and lists, alongside other JSON values."""
    leaf = _embed(value)
    filler = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), noise)
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.tuples(inner, st.lists(filler, max_size=3)).map(lambda t: [*t[1], t[0]]),
            st.tuples(json_keys, inner, st.dictionaries(json_keys, filler, max_size=3)).map(
                lambda t: {**t[2], t[0]: t[1]}
            ),
        ),
        max_leaves=6,
    )


@given(st.data(), sensitive_values)
@settings(max_examples=300)
def test_no_sensitive_value_survives_in_nested_json_text(data: st.DataObject, value: str) -> None:
    # What a vendor answers and a webhook receiver echoes: JSON as text.
    document = data.draw(_nested_with(value))
    redacted = redact_text(orjson.dumps(document).decode())
    assert not survives(value, redacted), redacted


@given(st.data(), sensitive_values, json_keys)
@settings(max_examples=300)
def test_no_sensitive_value_survives_in_nested_structures(
    data: st.DataObject, value: str, key: str
) -> None:
    # What a log event carries: the same documents as fields.
    document = data.draw(_nested_with(value))
    assert not survives(value, repr(redact_value(key, document)))
    assert not survives(value, repr(redact_mapping({key: document, "event": f"x {value}"})))
