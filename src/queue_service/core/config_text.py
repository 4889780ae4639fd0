"""Reading settings written as text, with messages that say how to fix them:
a JSON object, and the "did you mean" hint for a name that is not known."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import orjson


def suggestion(name: str, known: Iterable[str], *, otherwise: str = "") -> str:
    """``"; did you mean 'x'?"`` for the closest known name, else ``"; " +
    otherwise`` (or nothing): the tail of an "unknown ..." message."""
    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; {otherwise}" if otherwise else ""


def json_object(text: str, setting: str, shape: str) -> dict[str, Any]:
    """``text`` as a JSON object; ValueError naming ``setting`` otherwise, e.g.
    "QUEUE_SERVICE_X must be <shape>"."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{setting} is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{setting} must be {shape}")
    return value
