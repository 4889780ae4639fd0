"""The README's "Adding job types" run exactly as written, in a fresh
directory with only the clone's .venv, against real processes and a real
database: the README cannot drift from what works."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from tests.support.docs_runner import Clone, script, section
from tests.support.processes import REPO


def _poll(url: str, query: str, timeout: float = 90.0) -> list[tuple[object, ...]]:
    deadline = time.monotonic() + timeout
    rows: list[tuple[object, ...]] = []
    while time.monotonic() < deadline:
        with psycopg.connect(url) as conn:
            rows = conn.execute(query).fetchall()
        if rows:
            return rows
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for rows of {query!r}")


def test_the_readme_job_type_example_runs_as_written(
    empty_database_url: str, tmp_path: Path
) -> None:
    clone = Clone.make(
        tmp_path / "clone",
        DATABASE_URL=empty_database_url,
        QUEUE_SERVICE_PORT="0",  # the example's serve beside other tests
        QUEUE_SERVICE_DATA_DIR=str(tmp_path / "data"),
    )
    example = section(REPO / "README.md", "Adding job types")
    try:
        done = clone.run(script(example))
        assert "greetings/0001_greetings_sent" in done.stdout  # migrate, after the engine's
        assert "greet.send" in done.stdout  # types, then enqueue
        greeted = _poll(empty_database_url, "SELECT name FROM greetings_sent")
        assert greeted == [("Ada",)]
        finished = _poll(
            empty_database_url,
            "SELECT status, result FROM finished_jobs WHERE type = 'greet.send'",
        )
        assert finished == [("completed", {"greeted": "Ada"})]
    finally:
        clone.stop_services()
    logs = clone.service_logs()
    loaded = [line for line in logs.splitlines() if "job types loaded" in line]
    assert any('"communication"' in line and "greet.send" in line for line in loaded), logs


def test_the_plugin_testing_example_of_the_docs_passes_as_written(
    empty_database_url: str, pg_admin_url: str, tmp_path: Path
) -> None:
    clone = Clone.make(
        tmp_path / "clone",
        DATABASE_URL=empty_database_url,
        QUEUE_SERVICE_DATA_DIR=str(tmp_path / "data"),
        # The fixtures' server: ours (a superuser: they create databases).
        QUEUE_SERVICE_TEST_DATABASE_URL=pg_admin_url,
    )
    package = script(section(REPO / "README.md", "Adding job types"), services=False)
    testing = script(section(REPO / "docs" / "job-types.md", "Testing"))

    done = clone.run(package + testing)

    assert "2 passed" in done.stdout
