"""Load the named statements of ``store/sql/*.sql`` as LiteralStrings.

Statements are only ever read from the packaged files, never built from
strings at run time, so every query the store runs is one a reviewer read.
Each file groups a concern (engine.sql, auth.sql, ...); names are global.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import LiteralString, cast

_HEADER = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)


def load_queries() -> dict[str, LiteralString]:
    queries: dict[str, LiteralString] = {}
    files = sorted(
        (
            f
            for f in resources.files("queue_service.store.sql").iterdir()
            if f.name.endswith(".sql")
        ),
        key=lambda f: f.name,
    )
    for file in files:
        parts = _HEADER.split(file.read_text("utf-8"))
        # parts: [preamble, name1, body1, name2, body2, ...]
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in queries:
                raise ValueError(f"statement {name!r} is defined twice (again in {file.name})")
            queries[name] = cast("LiteralString", body.strip())
    return queries


Q = load_queries()
