"""PII and secret redaction for log output: pure functions that never raise.

:func:`redact_text` applies these rules to free text, in this order, so that a
credential is removed whole before a later rule could mask part of it:

1. URI credentials: ``scheme://user:pw@host`` -> ``scheme://user:***@host``.
2. ``Authorization: <scheme> <credentials>`` -> ``Authorization: <scheme> [redacted]``.
3. ``Bearer <token>`` -> ``Bearer [redacted]`` if the token has 8+ characters with
   a digit, or 20+ characters ("the ticket bearer changed" survives).
4. ``key=value`` / ``key: value`` for password, passwd, pwd, secret, token, api key,
   private/secret/access key, credential(s), cvc, cvv (also after ``_`` or ``-``)
   -> ``key=[redacted]``.
5. JWTs (``eyJ`` + base64url, 3-5 dot-separated segments) -> ``[jwt]``.
6. ``sk_live_``, ``sk_test_``, ``rk_live_``, ``rk_test_``, ``whsec_`` secrets, and bare
   ``sk_``/``rk_`` with 16+ alphanumerics -> the prefix + ``[redacted]``.
7. Emails -> first character + ``***@`` + domain: ``j***@example.com``; also
   percent-encoded (``jane%40example.com`` -> ``j***%40example.com``).
8. Cards: 13-19 digits, Luhn-valid, not glued to letters, in one run or in groups
   of 3-6 digits (the last may be shorter) split by single spaces or dashes
   -> ``****`` + last four: ``****4242``.
9. Phones in international form (``+``, 8-15 digits; spaces, dots, dashes and
   parentheses allowed) -> ``+``, the first min(4, n - 7) digits, ``***``, the last
   four, so at least three digits are hidden: ``+14155550123`` -> ``+1415***0123``.
10. Phones in national form, 9+ digits, masked the same way without the ``+``:
    ``(415) 555-0123``, ``1-415-555-0123``, ``415.555.0123`` (North American
    3-3-4 groups, or any groups after an area code in parentheses), and trunk-0
    numbers in groups of 2+ digits or in one run of 10-11 (``020 7946 0958``,
    ``01 23 45 67 89``, ``07700900123``) -> ``415***0123``, ``0207***0958``.
    Not after a digit and a dot or dash (the middle of a date, a version, a UUID).

:func:`redact_value` and :func:`redact_mapping` classify a field by its key
(camelCase -> snake_case, lower-cased, other characters -> ``_``); each name
below also matches after a prefix and ``_`` (``stripe_secret``, ``buyer_wallet``):

* secret: password(s), passwd, pwd, secret(s), token, authorization, api_key,
  private/secret/access/signing/encryption_key, credential(s), cookie, mnemonic,
  seed_phrase, cvc, cvv, pin, otp -> ``[redacted]`` (None and booleans are kept:
  they only tell whether a secret is set);
* amount: amount(s), cents, ``amount_*`` -> dropped unless ``keep_amounts``;
* identifier: wallet, wallet_address, payment_method_id, payment_intent_id, card,
  card_number, transaction_id -> first 4 + ``…`` + last 4, ``[redacted]`` when
  shorter than 12 characters, ``****4242`` for a card number;
* phone: phone, phone_number, mobile, msisdn -> runs of 6+ digits masked as in 9,
  with or without ``+``;
* email: email(s), email_address, and exactly to, cc, bcc, reply_to, recipient(s)
  -> every ``x@y`` masked, dotted domain or not;
* other: strings through :func:`redact_text`; mappings, lists, tuples, sets,
  dataclasses and pydantic models recursed into (keys redacted too); numbers,
  None, dates and UUIDs kept; anything else ``str()``-ed, then redacted.

Nesting deeper than 32 becomes ``[too deep]``, cycles ``[cycle]``, unreadable
values ``[unloggable]``. Redacting twice gives what redacting once gave.
Not detected: national numbers without a trunk 0 or North American grouping
(``4155550123``, ``30 1234567``), amounts written into a message, digits glued
to letters (``id4242…``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from enum import Enum, auto
from functools import lru_cache, partial
from typing import Any, Final, TypeAlias

__all__ = ["OMITTED", "REDACTED", "redact_mapping", "redact_text", "redact_value"]

REDACTED: Final = "[redacted]"
UNLOGGABLE: Final = "[unloggable]"
TOO_DEEP: Final = "[too deep]"
CYCLE: Final = "[cycle]"
MAX_DEPTH: Final = 32
# Our own placeholders must pass through unchanged, or a second pass would differ.
_PLACEHOLDERS: Final = frozenset({REDACTED, UNLOGGABLE, TOO_DEEP, CYCLE, "[jwt]"})


class _Omitted:
    """Type of OMITTED, returned for a field that must be dropped rather than shown."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "OMITTED"


OMITTED: Final = _Omitted()

# --- free-text rules --------------------------------------------------------------
# Every pattern either starts at a literal or is anchored by a look-behind, and
# repetitions are bounded where a failed match could restart inside a long run:
# a log line is attacker-influenced input and must not trigger quadratic matching.

_URI_CREDENTIALS = re.compile(
    r"\b([A-Za-z][A-Za-z0-9+.-]{0,30}://[^\s:/?#@]{0,256}):[^\s/?#]{0,256}@"
)
_AUTH_HEADER = re.compile(
    r"(?i)(?<![\w-])((?:proxy-)?authorization)([\"']?[ \t]*[:=][ \t]*[\"']?)"
    r"(?:(bearer|basic|digest|negotiate|token)[ \t]+)?[^\s\"',;]+"
)
_TOKEN = r"[A-Za-z0-9._~+/-]"
_BEARER = re.compile(
    rf"(?i)(?<![\w-])(bearer)[ \t]+"
    rf"(?:(?=[A-Za-z._~+/-]*[0-9]){_TOKEN}{{8,}}|{_TOKEN}{{20,}})=*"
)
_SECRET_WORDS = (
    r"(?:password|passwd|pwd|secret|token|api[_-]?key|(?:private|secret|access)[_-]?key"
    r"|credentials?|cvc|cvv2?)"
)
_KEY_VALUE = re.compile(
    rf"(?i)(?<![\w-])((?:[\w-]*[_-])?{_SECRET_WORDS})([\"']?[ \t]*[:=][ \t]*[\"']?)"
    r"[^\s\"'&,;]+"
)
_JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*){2,4}")
# The live/test prefixes are specific enough to match even when glued to text.
_PROVIDER_SECRET = re.compile(
    r"((?:sk|rk)_(?:live|test)_)[A-Za-z0-9]+|(whsec_)[A-Za-z0-9+/=]+"
    r"|(?<![A-Za-z0-9])((?:sk|rk)_)[A-Za-z0-9]{16,}"
)
# RFC 5322 atext minus quote, backtick, =, /, {|} (usually delimiters in log
# text) and * (our mask), so "j***@x.com" is never matched again.
_LOCAL = r"[\w.!#$%&+?^~-]"
# "%40" too: URLs and form bodies in driver logs carry addresses percent-encoded.
_EMAIL = re.compile(rf"(?<!{_LOCAL})({_LOCAL}){_LOCAL}*(@|%40)([\w-]+(?:\.[\w-]+)+)")
_CARD_RUN = re.compile(r"(?<![0-9A-Za-z])[0-9]+(?:[ -][0-9]+)*(?![0-9A-Za-z])")
_CARD_SEPARATOR = re.compile(r"([ -])")
_PHONE = re.compile(r"(?<![0-9A-Za-z])\+[0-9](?:[ .()-]{0,2}[0-9]){7,14}(?![0-9A-Za-z])")
# Each alternative is a shape people write national numbers in; digit counts
# are checked in _replace_national_phone. Group counts are bounded (linear time).
_NATIONAL_PHONE = re.compile(
    r"(?<![0-9A-Za-z+*])(?<![0-9][.-])(?:"
    r"\(0?[0-9]{2,4}\)[ .-]?[0-9]{2,8}(?:[ .-][0-9]{2,8}){0,3}"
    r"|(?:1[ .-])?[2-9][0-9]{2}[ .-][0-9]{3}[ .-][0-9]{4}"
    r"|0[0-9]{1,4}(?:[ .-][0-9]{2,8}){1,5}"
    r"|0[0-9]{9,10}"
    r")(?![0-9A-Za-z])"
)
_NATIONAL_MIN_DIGITS = 9
_NOT_DIGIT = re.compile(r"[^0-9]")


def _replace_auth_header(match: re.Match[str]) -> str:
    scheme = match.group(3)
    return f"{match.group(1)}{match.group(2)}{scheme + ' ' if scheme else ''}{REDACTED}"


def _replace_provider_secret(match: re.Match[str]) -> str:
    prefix = match.group(1) or match.group(2) or match.group(3)
    return f"{prefix}{REDACTED}"


def _mask_digits(digits: str) -> str:
    """Keep up to four leading and the last four digits, hiding at least three."""
    if len(digits) < 7:
        return "***"
    return f"{digits[: min(4, len(digits) - 7)]}***{digits[-4:]}"


def _replace_phone(match: re.Match[str]) -> str:
    run = match.group(0)
    return ("+" if run.startswith("+") else "") + _mask_digits(_NOT_DIGIT.sub("", run))


def _replace_national_phone(match: re.Match[str]) -> str:
    digits = _NOT_DIGIT.sub("", match.group(0))
    if len(digits) < _NATIONAL_MIN_DIGITS:
        return match.group(0)  # a short code, a date, a count: not a phone
    return _mask_digits(digits)


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


_MAX_CARD_GROUP = 6


def _card_window(groups: list[str], start: int) -> int | None:
    """Last group of the longest Luhn-valid 13-19 digit window beginning at start."""
    ends: list[int] = []
    total = 0
    for end in range(start, len(groups)):
        # A card written in groups has groups of at most 6 digits (4-6-5 for
        # Amex): a longer number before one is its neighbour, not its start.
        if end > start and max(len(groups[start]), len(groups[end])) > _MAX_CARD_GROUP:
            break
        total += len(groups[end])
        if total > 19:
            break
        if total >= 13:
            ends.append(end)
        # Cards are written in groups of 3+ digits, only the last may be shorter;
        # this also keeps "1 2 3 ..." from costing a Luhn check per position.
        if len(groups[end]) < 3:
            break
    for end in reversed(ends):
        if _luhn_valid("".join(groups[start : end + 1])):
            return end
    return None


def _replace_card_run(match: re.Match[str]) -> str:
    run = match.group(0)
    digit_count = len(run) - run.count(" ") - run.count("-")
    before = match.string[match.start() - 1] if match.start() else ""
    # After "+" up to 15 digits is a phone number; the phone rule masks it.
    if digit_count < 13 or (before == "+" and digit_count <= 15):
        return run
    parts = _CARD_SEPARATOR.split(run)
    groups, separators = parts[0::2], parts[1::2]
    # "****4242 …" is our own output: its last four must not seed a new card.
    index = 1 if before == "*" and len(groups[0]) == 4 else 0
    pieces: list[tuple[int, str]] = [(0, groups[0])] if index else []
    while index < len(groups):
        end = _card_window(groups, index)
        if end is None:
            pieces.append((index, groups[index]))
            index += 1
        else:
            pieces.append((index, "****" + "".join(groups[index : end + 1])[-4:]))
            index = end + 1
    text = pieces[0][1]
    for start, piece in pieces[1:]:
        text += separators[start - 1] + piece
    return text


_TEXT_RULES: Final[tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...]] = (
    (_URI_CREDENTIALS, r"\1:***@"),
    (_AUTH_HEADER, _replace_auth_header),
    (_BEARER, rf"\1 {REDACTED}"),
    (_KEY_VALUE, rf"\1\2{REDACTED}"),
    (_JWT, "[jwt]"),
    (_PROVIDER_SECRET, _replace_provider_secret),
    (_EMAIL, r"\1***\2\3"),
    # Cards before phones: a card after a stray "+" must still end as ****1234.
    (_CARD_RUN, _replace_card_run),
    (_PHONE, _replace_phone),
    # After the international rule, whose masks it must not re-match.
    (_NATIONAL_PHONE, _replace_national_phone),
)


def _to_text(value: object) -> str:
    """A plain str for any value; subclasses are copied so overrides cannot interfere."""
    if isinstance(value, str):
        return value if type(value) is str else str.__str__(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    try:
        text = str(value)
        return text if type(text) is str else str.__str__(text)
    except Exception:
        return UNLOGGABLE


def redact_text(s: str) -> str:
    """Mask emails, phones, cards, JWTs, API secrets, bearer tokens and URI passwords."""
    try:
        text = _to_text(s)
        for pattern, replacement in _TEXT_RULES:
            text = pattern.sub(replacement, text)
    except Exception:
        return UNLOGGABLE
    return text


# --- structured fields ------------------------------------------------------------


class _Kind(Enum):
    PLAIN = auto()
    SECRET = auto()
    AMOUNT = auto()
    IDENTIFIER = auto()
    PHONE = auto()
    EMAIL = auto()


_SECRET_KEY = re.compile(
    r"(?:^|_)(?:passwords?|passwd|pwd|secrets?|token|authorization|api_?key|credentials?"
    r"|(?:private|secret|access|signing|encryption)_?key|cookie|mnemonic|seed_phrase"
    r"|cvc|cvv2?|pin|otp)$"
)
_IDENTIFIER_KEY = re.compile(
    r"(?:^|_)(?:wallet|wallet_address|payment_method_id|payment_intent_id|card|card_number"
    r"|transaction_id)$"
)
_EMAIL_KEY = re.compile(r"(?:^|_)(?:emails?|email_address)$|^(?:to|cc|bcc|reply_to|recipients?)$")
_KEY_RULES: Final = (
    (_Kind.SECRET, _SECRET_KEY),
    (_Kind.AMOUNT, re.compile(r"(?:^|_)(?:amounts?|cents)$|^amount_")),
    (_Kind.IDENTIFIER, _IDENTIFIER_KEY),
    (_Kind.PHONE, re.compile(r"(?:^|_)(?:phone|phone_number|mobile|msisdn)$")),
    (_Kind.EMAIL, _EMAIL_KEY),
)
_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_LOOSE_PHONE = re.compile(r"\+?[0-9](?:[ .()/-]{0,2}[0-9]){5,}")
_LOOSE_LOCAL = r"[^\s@<>()\[\],;:\"']"
_LOOSE_EMAIL = re.compile(rf"(?<!{_LOOSE_LOCAL})({_LOOSE_LOCAL}){_LOOSE_LOCAL}*@")
_SHORTENED = re.compile(r".{4}….{4}|\*{4}[0-9]{4}", re.DOTALL)
_SEQUENCES: Final = (list, tuple, set, frozenset)
_Sequence: TypeAlias = list[object] | tuple[object, ...] | set[object] | frozenset[object]


def _classify_key(key: str) -> _Kind:
    name = _NON_ALNUM.sub("_", _WORD_BOUNDARY.sub("_", key).lower()).strip("_")
    for kind, pattern in _KEY_RULES:
        if pattern.search(name):
            return kind
    return _Kind.PLAIN


_classify_cached = lru_cache(maxsize=4096)(_classify_key)


def _classify(key: str) -> _Kind:
    # Keys repeat on every log line; only short ones are cached to bound memory.
    return _classify_cached(key) if len(key) <= 64 else _classify_key(key)


def _truncate(text: str) -> str:
    if not text or text in _PLACEHOLDERS or _SHORTENED.fullmatch(text):
        return text
    if len(text) >= 12:
        return f"{text[:4]}…{text[-4:]}"
    return REDACTED


def _redact_scalar(kind: _Kind, value: object) -> object:
    if value is None or isinstance(value, bool | float):
        return value
    keeps_native = kind is _Kind.PLAIN or kind is _Kind.EMAIL
    if keeps_native and isinstance(value, int | dt.date | dt.time | uuid.UUID):
        return value
    text = redact_text(_to_text(value))
    if kind is _Kind.IDENTIFIER:
        return _truncate(text)
    if kind is _Kind.PHONE:
        return _LOOSE_PHONE.sub(_replace_phone, text)
    if kind is _Kind.EMAIL:
        return _LOOSE_EMAIL.sub(r"\1***@", text)
    return text


def _record_items(value: object) -> Iterable[tuple[object, object]] | None:
    """The fields of a mapping, dataclass or pydantic model; None for anything else."""
    if isinstance(value, Mapping):
        return value.items()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(field.name, getattr(value, field.name)) for field in dataclasses.fields(value)]
    dump = getattr(type(value), "model_dump", None)
    if callable(dump):
        data = dump(value)
        if isinstance(data, Mapping):
            return data.items()
    return None


class _Walk:
    """One redaction pass: the amount policy and the containers on the current path."""

    __slots__ = ("keep_amounts", "path")

    def __init__(self, *, keep_amounts: bool) -> None:
        self.keep_amounts = keep_amounts
        self.path: set[int] = set()

    def visit(self, container: object, produce: Callable[[], object]) -> object:
        """Run produce() with container on the path, so a cycle back to it ends there."""
        marker = id(container)
        if marker in self.path:
            return CYCLE
        self.path.add(marker)
        try:
            return produce()
        finally:
            self.path.discard(marker)


def _redact_items(
    items: Iterable[tuple[object, object]], walk: _Walk, depth: int
) -> dict[str, object]:
    redacted: dict[str, object] = {}
    for raw_key, value in items:
        # Classifying the redacted key keeps a second pass on the same rule.
        key = redact_text(_to_text(raw_key))
        result = _redact_node(_classify(key), value, walk, depth + 1)
        if result is not OMITTED:
            redacted[key] = result
    return redacted


def _redact_sequence(kind: _Kind, value: _Sequence, walk: _Walk, depth: int) -> object:
    # Elements inherit the key's rule: a list under "to" holds addresses.
    items = [_redact_node(kind, item, walk, depth + 1) for item in value]
    return tuple(items) if isinstance(value, tuple) else items


def _redact_node(kind: _Kind, value: object, walk: _Walk, depth: int) -> object:
    """Redact one value found under a key of the given kind; never raises."""
    try:
        if kind is _Kind.SECRET:
            return value if value is None or isinstance(value, bool) else REDACTED
        if kind is _Kind.AMOUNT:
            if not walk.keep_amounts:
                return OMITTED
            kind = _Kind.PLAIN
        if depth >= MAX_DEPTH:
            return TOO_DEEP
        if isinstance(value, _SEQUENCES):
            return walk.visit(value, partial(_redact_sequence, kind, value, walk, depth))
        items = _record_items(value)
        if items is None:
            return _redact_scalar(kind, value)
        return walk.visit(value, partial(_redact_items, items, walk, depth))
    except Exception:
        return UNLOGGABLE


def redact_value(key: str, value: object, *, keep_amounts: bool = False) -> object:
    """Redact a structured field by key name; OMITTED means "drop this field"."""
    kind = _classify(redact_text(_to_text(key)))
    return _redact_node(kind, value, _Walk(keep_amounts=keep_amounts), 0)


def redact_mapping(
    mapping: Mapping[Any, object], *, keep_amounts: bool = False
) -> dict[str, object]:
    """Redact every field (keys become redacted strings); amounts need keep_amounts."""
    walk = _Walk(keep_amounts=keep_amounts)
    try:
        result = walk.visit(mapping, partial(_redact_items, mapping.items(), walk, 0))
    except Exception:
        result = None
    return result if isinstance(result, dict) else {"redaction_error": UNLOGGABLE}
