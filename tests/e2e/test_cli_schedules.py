"""`queue-service schedules` as an operator uses it: the built-ins listed and
adjusted, a schedule added with its reading and next tick, errors as one
clear line, removal by name."""

from __future__ import annotations

import psycopg

from tests.e2e.test_cli import cli


def test_an_operator_lists_adjusts_adds_and_removes_schedules(database_url: str) -> None:
    listed = cli(database_url, "schedules", "list").stdout
    assert "cleanup" in listed and "maintenance" in listed
    assert "At the start of every" in listed  # the table may wrap the rest

    # A built-in is adjustable like any other.
    changed = cli(
        database_url,
        *("schedules", "add", "cleanup", "--cron", "15 3 * * *", "--type", "cleanup.run"),
        *("--timezone", "Europe/Paris", "--replace"),
    ).stdout
    assert "saved cleanup" in changed and "At 03:15 every day (Europe/Paris)" in changed

    added = cli(
        database_url,
        *("schedules", "add", "nightly", "--cron", "0 2 * * *", "--type", "test.echo"),
        *("--data", '{"value": 1}', "--tenant", "acme", "--misfire", "skip"),
    ).stdout
    assert "added nightly" in added and "for acme: At 02:00 every day (UTC)" in added
    assert "next run: " in added

    bad = cli(
        database_url,
        *("schedules", "add", "x", "--cron", "0 2 * *", "--type", "test.echo"),
        check=False,
    )
    assert bad.returncode == 1
    assert "has 4 fields" in bad.stderr and "minute hour day-of-month" in bad.stderr

    assert "removed nightly" in cli(database_url, "schedules", "remove", "nightly").stdout
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT tenant_id, name, cron, timezone FROM schedules ORDER BY name"
        ).fetchall()
    assert rows == [
        ("_system", "cleanup", "15 3 * * *", "Europe/Paris"),
        ("_system", "maintenance", "0 * * * *", "UTC"),
    ]
