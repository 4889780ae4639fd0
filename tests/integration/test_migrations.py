"""Migrations build the schema once, survive concurrent runners, and refuse edited history."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter

import psycopg
import pytest

from queue_service.store.migrate import (
    MigrationError,
    apply_migrations,
    pending_migrations,
    shipped_migrations,
)

ENGINE_TABLES = {
    "jobs",
    "finished_jobs",
    "job_events",
    "dead_letter_jobs",
    "queue_idempotency_keys",
    "queue_pauses",
    "workers",
    "schema_migrations",
}

SHIPPED = [f"{m.version:04d}_{m.name}" for m in shipped_migrations()]

# Each child connects nothing until told "go" on stdin, so both start migrating together.
_RUNNER = textwrap.dedent(
    """
    import json, sys
    from queue_service.store.migrate import apply_migrations
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(apply_migrations(sys.argv[1])), flush=True)
    """
)


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {str(row[0]) for row in rows}


def test_migrations_build_the_schema_once(empty_database_url: str) -> None:
    assert pending_migrations(empty_database_url) == SHIPPED
    assert ENGINE_TABLES.isdisjoint(_tables(empty_database_url))

    assert apply_migrations(empty_database_url) == SHIPPED

    assert _tables(empty_database_url) >= ENGINE_TABLES
    assert pending_migrations(empty_database_url) == []
    assert apply_migrations(empty_database_url) == []


def test_template_copies_are_fully_migrated(database_url: str) -> None:
    assert pending_migrations(database_url) == []
    assert _tables(database_url) >= ENGINE_TABLES


@pytest.mark.slow
def test_two_processes_migrating_at_once_apply_each_file_once(empty_database_url: str) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _RUNNER, empty_database_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        for child in children:  # release both before waiting on either
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = [child.communicate(timeout=60) for child in children]
    finally:
        for child in children:
            child.kill()
            child.wait()

    for child, (_out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
    applied = [name for out, _err in results for name in json.loads(out)]
    assert sorted(applied) == SHIPPED  # every file applied, none twice
    with psycopg.connect(empty_database_url) as conn:
        versions = Counter(row[0] for row in conn.execute("SELECT version FROM schema_migrations"))
    assert versions == Counter(m.version for m in shipped_migrations())


def test_a_changed_checksum_is_refused(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")

    with pytest.raises(MigrationError, match="changed after it was applied"):
        apply_migrations(database_url)
