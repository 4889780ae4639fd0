"""Load the named statements of ``store/sql/*.sql`` as LiteralStrings.

Statements are only ever read from the packaged files, never built from
strings at run time, so every query the store runs is one a reviewer read.
Each file groups a concern (engine.sql, auth.sql, ...); names are global.

A file may also define a fragment, ``-- fragment: x`` instead of
``-- name: x``: SQL that several statements share (decision 0028). A
statement takes it with a line of its own, ``-- include: x``, which is
replaced here, once, at load: the statements the store prepares are whole,
as if written out, and cost nothing more to run. Each statement is kept as
the server receives it: ``-- <name>`` on its first line, then its SQL
without the leading comment block (decision 0030). The marker is an SQL
comment, so it cannot be mistaken for a psycopg placeholder (``%(x)s``), a
psycopg.sql field (``{x}``, as in fair.sql) or SQL. Fragments share the
statements' names; the fragment's leading comment lines document it and
are not copied. Any doubt is a load error: a fragment unknown, unused,
defined twice, empty, named like a statement or including another.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import resources
from typing import LiteralString

_HEADER = re.compile(r"^-- (name|fragment): ([a-z_]+)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"^([ \t]*)-- include: ([a-z_]+)[ \t]*$", re.MULTILINE)
_INCLUDE_LIKE = re.compile(r"^[ \t]*--[ \t]*include\b.*$", re.MULTILINE | re.IGNORECASE)


def _without_leading_comments(body: str) -> str:
    """SQL without the comment lines that open it (an include line, which is
    SQL to be, stays)."""
    lines = body.strip().splitlines()
    while lines and lines[0].lstrip().startswith("--") and not _INCLUDE_LIKE.match(lines[0]):
        lines.pop(0)
    return "\n".join(lines).strip()


def _as_sent(name: str, body: str) -> str:
    """A statement as the server receives it: its name on the first line
    (what pg_stat_activity, auto_explain and the server log then show), then
    its SQL without the leading comment block that says why. The why stays in
    the file for the reader; sent, it only made the text long: psycopg parses
    a statement longer than 4,096 bytes afresh on every execution instead of
    once (decision 0030). Comments inside the SQL, and an include line, stay."""
    return "-- " + name + "\n" + _without_leading_comments(body)


def parse_sql(
    sources: Iterable[tuple[str, str]],
) -> tuple[dict[str, LiteralString], dict[str, LiteralString]]:
    """Statements and fragments of ``(file name, text)`` pairs, fragments
    expanded into the statements: ``(statements, fragments)``. The texts are
    the packaged files' (or a test's literals), hence LiteralString; mypy
    checks LiteralString as str, so no cast is needed (or allowed)."""
    statements, fragments = _split(sources)
    used: set[str] = set()
    for name, body in statements.items():
        if "include" in body.lower():  # most have none: spares the regexes
            statements[name] = _expand(name, body, fragments, used)
    unused = sorted(set(fragments) - used)
    if unused:
        raise ValueError(f"fragments no statement includes: {', '.join(unused)}")
    return statements, fragments


def _split(
    sources: Iterable[tuple[str, str]],
) -> tuple[dict[str, LiteralString], dict[str, LiteralString]]:
    """The files' statements and fragments, as written, by name."""
    statements: dict[str, LiteralString] = {}
    fragments: dict[str, LiteralString] = {}
    origin: dict[str, str] = {}
    for file_name, text in sources:
        parts = _HEADER.split(text)
        # parts: [preamble, kind1, name1, body1, kind2, name2, body2, ...]
        for kind, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
            if name in origin:
                raise ValueError(
                    f"{kind} {name!r} in {file_name}: {origin[name]} already defines that name"
                )
            origin[name] = f"{file_name} ({kind})"
            if kind == "name":
                statements[name] = _as_sent(name, body)
                continue
            if _INCLUDE_LIKE.search(body):
                raise ValueError(f"fragment {name!r} in {file_name} includes another fragment")
            sql = _without_leading_comments(body)
            if not sql:
                raise ValueError(f"fragment {name!r} in {file_name} has no SQL")
            fragments[name] = sql
    return statements, fragments


def _expand(
    statement: str, body: str, fragments: dict[str, LiteralString], used: set[str]
) -> LiteralString:
    """``body`` with each include line replaced by its fragment, indented as
    the line was; the fragments taken are added to ``used``."""
    pieces = _INCLUDE.split(body)
    # pieces: [sql, indent1, fragment1, sql, indent2, fragment2, sql, ...]
    for text in pieces[::3]:
        if stray := _INCLUDE_LIKE.search(text):
            raise ValueError(f"statement {statement!r} has a malformed include: {stray[0]!r}")
    for i in range(1, len(pieces), 3):
        indent, name = pieces[i], pieces[i + 1]
        if name not in fragments:
            raise ValueError(f"statement {statement!r} includes unknown fragment {name!r}")
        used.add(name)
        lines = fragments[name].splitlines()
        pieces[i], pieces[i + 1] = "", "\n".join(indent + ln if ln else ln for ln in lines)
    return "".join(pieces)


def _packaged_sources() -> list[tuple[str, str]]:
    files = sorted(
        (
            f
            for f in resources.files("queue_service.store.sql").iterdir()
            if f.name.endswith(".sql")
        ),
        key=lambda f: f.name,
    )
    return [(f.name, f.read_text("utf-8")) for f in files]


def load_queries() -> dict[str, LiteralString]:
    statements, _ = parse_sql(_packaged_sources())
    return statements


def load_fragments() -> dict[str, LiteralString]:
    """The fragments as written (their SQL, without their comments), for
    tests that hold them against the schema."""
    _, fragments = parse_sql(_packaged_sources())
    return fragments


Q = load_queries()
