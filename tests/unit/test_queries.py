"""The statement loader (store/queries.py): named statements, and fragments
expanded into them once, at load (decision 0028)."""

from __future__ import annotations

import pytest

from queue_service.store.queries import Q, load_fragments, parse_sql

STATEMENT = """\
-- name: finish_it
-- Why it finishes.
WITH done AS (DELETE FROM t RETURNING *),
moved AS (
    -- include: into_history
)
SELECT id FROM done
"""

FRAGMENT = """\
-- fragment: into_history
-- What the fragment does: documented here, not copied.
INSERT INTO history (id)
SELECT id
FROM done
"""


def test_a_fragment_replaces_its_include_line_indented_as_the_line_was() -> None:
    statements, fragments = parse_sql([("a.sql", STATEMENT + "\n" + FRAGMENT)])
    assert set(statements) == {"finish_it"}
    assert statements["finish_it"] == (
        "-- finish_it\n"
        "WITH done AS (DELETE FROM t RETURNING *),\n"
        "moved AS (\n"
        "    INSERT INTO history (id)\n"
        "    SELECT id\n"
        "    FROM done\n"
        ")\n"
        "SELECT id FROM done"
    )
    assert fragments == {"into_history": "INSERT INTO history (id)\nSELECT id\nFROM done"}


def test_a_statement_is_sent_under_its_name_without_the_comment_that_says_why() -> None:
    documented = "-- name: take\n-- Why, at length.\n-- More why.\nSELECT 1 -- inline stays\n"
    statements, _ = parse_sql([("a.sql", documented)])
    assert statements["take"] == "-- take\nSELECT 1 -- inline stays"


def test_a_statement_that_opens_with_an_include_keeps_it() -> None:
    opening = "-- name: only_history\n-- Why.\n-- include: into_history\n"
    statements, _ = parse_sql([("a.sql", opening + FRAGMENT)])
    assert (
        statements["only_history"]
        == "-- only_history\nINSERT INTO history (id)\nSELECT id\nFROM done"
    )


@pytest.mark.parametrize(
    "name",
    [
        "job_claim",
        "job_claim_fair",
        "job_complete_many",
        "job_finish_many",
        "job_heartbeat_many",
        "job_release_many",
        "job_retry_later",
        "job_snooze",
        "job_insert",
        "job_insert_keyless",
    ],
)
def test_a_hot_statement_is_short_enough_for_the_drivers_parse_cache(name: str) -> None:
    # psycopg converts a statement longer than this on every execution
    # (regex over the whole text) instead of once: decision 0030.
    from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

    assert len(Q[name].encode()) <= MAX_CACHED_STATEMENT_LENGTH - 100  # room for a queue literal


def test_a_fragment_serves_statements_of_other_files_and_several_of_them() -> None:
    second = STATEMENT.replace("finish_it", "finish_it_again")
    statements, _ = parse_sql([("a.sql", FRAGMENT), ("b.sql", STATEMENT + second)])
    first, again = statements["finish_it"], statements["finish_it_again"]
    assert first.split("\n", 1)[1] == again.split("\n", 1)[1]  # all but the name line
    assert "INSERT INTO history (id)" in statements["finish_it"]


def test_an_unknown_fragment_is_a_load_error() -> None:
    with pytest.raises(ValueError, match="'finish_it' includes unknown fragment 'into_history'"):
        parse_sql([("a.sql", STATEMENT)])


def test_an_unused_fragment_is_a_load_error() -> None:
    unused = FRAGMENT.replace("into_history", "into_nowhere")
    with pytest.raises(ValueError, match="fragments no statement includes: into_nowhere"):
        parse_sql([("a.sql", STATEMENT + FRAGMENT + unused)])


@pytest.mark.parametrize("fragment_first", [True, False])
def test_a_fragment_named_like_a_statement_is_a_load_error(fragment_first: bool) -> None:
    clash = FRAGMENT.replace("into_history", "finish_it")
    files = [("a.sql", STATEMENT + FRAGMENT), ("b.sql", clash)]
    with pytest.raises(ValueError, match=r"'finish_it' in .*already defines that name"):
        parse_sql(files[::-1] if fragment_first else files)


def test_a_name_defined_twice_is_a_load_error() -> None:
    with pytest.raises(ValueError, match=r"'finish_it' in b\.sql: a\.sql \(name\) already"):
        parse_sql([("a.sql", STATEMENT + FRAGMENT), ("b.sql", STATEMENT)])


def test_a_fragment_including_another_is_a_load_error() -> None:
    nested = "-- fragment: outer\n-- include: into_history\n"
    with pytest.raises(ValueError, match=r"fragment 'outer' in a\.sql includes another fragment"):
        parse_sql([("a.sql", STATEMENT + FRAGMENT + nested)])


def test_a_fragment_with_only_comments_is_a_load_error() -> None:
    empty = "-- fragment: into_history\n-- Nothing but words.\n"
    with pytest.raises(ValueError, match=r"fragment 'into_history' in a\.sql has no SQL"):
        parse_sql([("a.sql", STATEMENT + empty)])


@pytest.mark.parametrize(
    "line", ["--include: into_history", "-- include: IntoHistory", "-- Include: into_history x"]
)
def test_an_include_line_the_loader_cannot_read_is_a_load_error(line: str) -> None:
    statement = STATEMENT.replace("-- include: into_history", line)
    with pytest.raises(ValueError, match="'finish_it' has a malformed include"):
        parse_sql([("a.sql", statement + FRAGMENT)])


def test_the_packaged_statements_hold_no_include_left_unexpanded() -> None:
    assert load_fragments(), "the packaged files define fragments"
    assert [name for name, text in Q.items() if "-- include:" in text] == []
