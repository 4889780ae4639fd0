"""Load the named statements of queries.sql as LiteralStrings.

Statements are only ever read from the packaged file, never built from
strings at run time, so every query the store runs is one a reviewer read.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import LiteralString, cast

_HEADER = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)


def load_queries() -> dict[str, LiteralString]:
    text = resources.files("queue_service.store").joinpath("queries.sql").read_text("utf-8")
    parts = _HEADER.split(text)
    queries: dict[str, LiteralString] = {}
    # parts: [preamble, name1, body1, name2, body2, ...]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"queries.sql defines {name!r} twice")
        queries[name] = cast("LiteralString", body.strip())
    return queries


Q = load_queries()
