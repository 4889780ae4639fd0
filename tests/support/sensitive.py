"""Sensitive values for redaction tests: hypothesis strategies for every kind
the redactor must remove (emails, E.164 and national phones, Luhn-valid cards
written with spaces or dashes, JWTs, Stripe and webhook secrets), and fixed
samples the integration tests put in payloads and provider answers."""

from __future__ import annotations

import string
from typing import Any

from hypothesis import strategies as st
from hypothesis.provisional import domains

ALNUM = string.ascii_letters + string.digits
_B64URL = ALNUM + "_-"
_DIGITS = "0123456789"


def luhn_complete(payload: str) -> str:
    """``payload`` plus the check digit that makes it Luhn-valid."""
    total = 0
    for position, char in enumerate(reversed(payload)):
        value = int(char) * 2 if position % 2 == 0 else int(char)
        total += value - 9 if value > 9 else value
    return payload + str((10 - total % 10) % 10)


emails = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.text(ALNUM + "._%+-", min_size=1, max_size=20).filter(lambda s: s[0] not in "._-"),
    domains(),
)
e164_phones = st.builds(
    lambda first, rest: f"+{first}{rest}",
    st.integers(1, 9),
    st.text(_DIGITS, min_size=7, max_size=14),
)


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(_DIGITS, min_size=n, max_size=n)


_area = st.builds(lambda a, b: a + b, st.sampled_from("23456789"), _digits(2))
north_american = st.builds(
    lambda area, exchange, line, style: style.format(area, exchange, line),
    _area,
    _digits(3),
    _digits(4),
    st.sampled_from(
        ["({}) {}-{}", "{}-{}-{}", "{}.{}.{}", "{} {} {}", "1-{}-{}-{}", "1 ({}) {}-{}"]
    ),
)
trunk_zero = st.one_of(
    # UK 020 7946 0958 and 07700 900123, French 01 23 45 67 89, German 030 12345678,
    # one run 0612345678, an area code in parentheses (030) 12345678.
    st.builds(lambda a, b, c: f"0{a} {b} {c}", _digits(2), _digits(4), _digits(4)),
    st.builds(lambda a, b: f"0{a} {b}", _digits(4), _digits(6)),
    st.builds(
        lambda first, pairs, sep: sep.join([f"0{first}", *pairs]),
        _digits(1),
        st.lists(_digits(2), min_size=4, max_size=4),
        st.sampled_from([" ", ".", "-"]),
    ),
    st.builds(lambda a, b: f"0{a} {b}", _digits(2), _digits(8)),
    st.builds(lambda a: f"0{a}", st.text(_DIGITS, min_size=9, max_size=10)),
    st.builds(lambda a, b: f"(0{a}) {b}", _digits(2), _digits(8)),
)
national_phones = st.one_of(north_american, trunk_zero)


@st.composite
def cards(draw: st.DrawFn) -> str:
    """A Luhn-valid 13-19 digit card number, in one run or in groups of four
    split by spaces or dashes."""
    length = draw(st.integers(13, 19))
    digits = luhn_complete(draw(_digits(length - 1)))
    separator = draw(st.sampled_from(["", " ", "-"]))
    return separator.join(digits[i : i + 4] for i in range(0, len(digits), 4))


jwts = st.builds(
    lambda header, payload, signature: f"eyJ{header}.{payload}.{signature}",
    st.text(_B64URL, min_size=4, max_size=30),
    st.text(_B64URL, min_size=4, max_size=40),
    st.text(_B64URL, min_size=8, max_size=43),
)
provider_secrets = st.builds(
    lambda prefix, body: prefix + body,
    st.sampled_from(["sk_live_", "sk_test_", "whsec_"]),
    st.text(ALNUM, min_size=8, max_size=40),
)
sensitive_values = st.one_of(emails, e164_phones, national_phones, cards(), jwts, provider_secrets)


def digits_of(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def survives(value: str, text: str) -> bool:
    """Whether ``value`` is readable in ``text``: as written, or (a phone or a
    card) its 9+ digits in one unbroken run."""
    digits = digits_of(value)
    return value in text or (len(digits) >= 9 and digits in text)


# Fixed samples for integration tests: each kind once, as a person would write it.
SAMPLES: dict[str, str] = {
    "email": "jane.doe+tickets@example.com",
    "e164": "+14155550123",
    "national": "(415) 555-0199",
    "card": "4242 4242 4242 4242",
    "card_dashes": "5555-5555-5555-4444",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLXZhbHVlLTEyMzQ",
    "sk_live": "sk_live_51HxAbCdEfGhIjKlMnOpQrSt",
    "sk_test": "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "whsec": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}


def sample_text() -> str:
    """Every sample in one sentence, as vendor error text might quote them."""
    return " ; ".join(f"{kind} {value}" for kind, value in SAMPLES.items())


def sample_leaks(text: Any) -> list[str]:
    """The samples still readable in ``text`` (any value, str()-ed)."""
    rendered = str(text)
    return [kind for kind, value in SAMPLES.items() if survives(value, rendered)]
