"""The command line as an operator uses it: real processes, real database."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from queue_service.store import Database, Store
from tests.support.processes import REPO, run_cli


def cli(database_url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = run_cli(database_url, *args, processors="tests.support.processors:PROCESSORS")
    if check and done.returncode != 0:
        raise AssertionError(f"exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def test_migrate_reports_an_up_to_date_schema(database_url: str) -> None:
    assert "schema is up to date" in cli(database_url, "migrate").stdout


def test_enqueue_prints_the_job_and_status_counts_it(database_url: str) -> None:
    enqueue = ["enqueue", "test.echo", "--tenant", "acme", "--data", '{"value": 7}']
    enqueue += ["--idempotency-key", "k1"]
    created = json.loads(cli(database_url, *enqueue).stdout)
    assert created["created"] is True
    assert created["job"]["status"] == "waiting" and created["job"]["tenant_id"] == "acme"
    again = json.loads(cli(database_url, *enqueue).stdout)
    assert again["created"] is False and again["job"]["id"] == created["job"]["id"]

    report: dict[str, Any] = json.loads(cli(database_url, "status", "--json").stdout)
    test_queue = next(q for q in report["queues"] if q["name"] == "test")
    assert test_queue["counts"]["waiting"] == 1
    table = cli(database_url, "status").stdout
    assert "test" in table and "waiting" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["enqueue", "test.ecko", "--tenant", "a"], "did you mean 'test.echo'"),
        (["enqueue", "test.echo", "--tenant", "a", "--data", "{oops"], "not valid JSON"),
        (["enqueue", "test.echo", "--tenant", "a", "--data", "[1]"], "must be a JSON object"),
        (["enqueue", "test.echo", "--tenant", "a", "--data", '{"x": 1}'], "data.x"),
        (["dlq", "delete", "00000000-0000-0000-0000-000000000000"], "no dead letter"),
    ],
)
def test_bad_commands_fail_with_one_clear_line(
    database_url: str, args: list[str], message: str
) -> None:
    done = cli(database_url, *args, check=False)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_configuration_names_the_variable(database_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "queue_service.cli", "status"],
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "PYTHONPATH": str(REPO),
            "QUEUE_SERVICE_POLL_INTERVAL_SECONDS": "soon",
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 2
    assert "QUEUE_SERVICE_POLL_INTERVAL_SECONDS" in done.stderr


def test_dlq_list_replay_and_delete(database_url: str) -> None:
    job = json.loads(
        cli(
            database_url,
            "enqueue",
            "test.fail",
            "--tenant",
            "acme",
            "--data",
            '{"mode": "permanent"}',
        ).stdout
    )["job"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Fail it the way a worker would: claim, then finish as failed.
        token = conn.execute(
            "UPDATE jobs SET status = 'active', attempts = 1, lease_token = 1, "
            "started_at = now() WHERE id = %s RETURNING lease_token",
            (job["id"],),
        ).fetchone()
        assert token is not None

    async def fail() -> None:
        db = Database(database_url)
        await db.open()
        try:
            await Store(db).finish_many([(job["id"], 1, "card declined")], "failed")
        finally:
            await db.close()

    asyncio.run(fail())
    listing = cli(database_url, "dlq", "list").stdout
    assert "test.fail" in listing and "card declined" in listing
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT id FROM dead_letter_jobs").fetchone()
    assert row is not None
    replayed = cli(database_url, "dlq", "replay", str(row[0])).stdout
    assert "replayed as job" in replayed
    second = cli(database_url, "dlq", "replay", str(row[0]), check=False)
    assert second.returncode == 1 and "already replayed" in second.stderr
    assert "deleted" in cli(database_url, "dlq", "delete", str(row[0])).stdout


def test_an_operator_pauses_and_resumes_a_queue_for_every_tenant(database_url: str) -> None:
    assert "paused test for every tenant" in cli(database_url, "pause", "test").stdout
    report = json.loads(cli(database_url, "status", "--json").stdout)
    assert next(q for q in report["queues"] if q["name"] == "test")["paused_for"] == ["*"]
    assert "resumed test" in cli(database_url, "resume", "test").stdout
    assert "was not paused" in cli(database_url, "resume", "test").stdout
    done = cli(database_url, "pause", "tset", check=False)
    assert done.returncode == 1 and "did you mean 'test'" in done.stderr
