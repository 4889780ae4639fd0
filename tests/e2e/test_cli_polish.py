"""The command line's manners: enumerations refused with their choices listed,
process commands pointing at the settings reference, and long commands that
draw progress on a terminal but print only their result when piped or with
--json."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from uuid import UUID

import psycopg
import pytest

from queue_service.bench import WORKLOADS
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import open_runtime
from queue_service.settings import Settings
from queue_service.store import Database, Store
from tests.e2e.test_cli import cli
from tests.support.processes import REPO
from tests.support.processors import PROCESSORS

BAR = "━"


@pytest.mark.parametrize(
    ("args", "option", "choices"),
    [
        (["bench", "--workload", "drian"], "--workload", ["enqueue-single", "drain", "purge"]),
        (["alerts", "list", "--status", "open"], "--status", ["firing", "acknowledged"]),
        (
            ["schedules", "add", "x", "--cron", "* * * * *", "--type", "t", "--misfire", "later"],
            "--misfire",
            ["run_once", "skip"],
        ),
    ],
)
def test_a_value_outside_an_enumeration_is_refused_with_the_choices(
    args: list[str], option: str, choices: list[str]
) -> None:
    done = cli("postgresql://unused@127.0.0.1:1/none", *args, check=False)

    assert done.returncode == 2
    text = " ".join(done.stderr.replace("│", " ").split())
    assert f"Invalid value for '{option}'" in text
    for choice in choices:
        assert f"'{choice}'" in text
    assert "Traceback" not in done.stderr


def test_the_bench_help_lists_the_workloads() -> None:
    shown = cli("postgresql://unused@127.0.0.1:1/none", "bench", "--help").stdout.splitlines()
    # The choices wrap inside their table cell: read that cell, line by line.
    row = next(i for i, line in enumerate(shown) if "--workload" in line)
    start, end = shown[row].index("<"), shown[row].index("What to measure")
    cell = "".join(line[start:end].strip() for line in shown[row : row + 4])
    assert f"<{'|'.join(WORKLOADS)}>" in cell


@pytest.mark.parametrize("command", ["serve", "api", "worker"])
def test_a_process_command_s_help_points_to_the_settings_reference(command: str) -> None:
    shown = " ".join(cli("postgresql://unused@127.0.0.1:1/none", command, "--help").stdout.split())

    assert "README's 'Configuration' table" in shown
    assert "docs/contract.md §10" in shown


def test_migrate_piped_prints_only_what_it_applied(empty_database_url: str) -> None:
    done = cli(empty_database_url, "migrate")

    assert done.stdout.startswith("applied: 0001_")
    assert BAR not in done.stderr and "\x1b[" not in done.stderr + done.stdout
    assert cli(empty_database_url, "migrate").stdout.strip() == "schema is up to date"


def on_a_terminal(database_url: str, *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run a command with stdout and stderr on a pseudo-terminal; its exit
    code and everything it drew, colours and cursor moves taken out."""
    leader, follower = pty.openpty()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "QUEUE_SERVICE_PROCESSORS": "tests.support.processors:PROCESSORS",
        "PYTHONPATH": str(REPO),
        "TERM": "xterm-256color",
        "COLUMNS": "120",
    }
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "queue_service.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=env,
        cwd=REPO,
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif proc.poll() is not None:
            break
    os.close(leader)
    drawn = b"".join(chunks).decode("utf-8", errors="replace")
    return proc.wait(10), re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)


def test_migrate_on_a_terminal_draws_a_progress_bar(empty_database_url: str) -> None:
    code, drawn = on_a_terminal(empty_database_url, "migrate")

    assert code == 0, drawn
    assert BAR in drawn
    assert "applied: 0001_" in drawn


async def dead_letters(database_url: str, n: int) -> list[UUID]:
    """``n`` failed test.fail jobs, dead-lettered the way a worker finishes them."""
    settings = Settings(database_url=database_url)
    async with open_runtime(settings, database_url, extra_processors=PROCESSORS) as rt:
        done = await rt.manager.enqueue_many(
            [
                EnqueueRequest(type="test.fail", data={"mode": "permanent"}, tenant_id="acme")
                for _ in range(n)
            ]
        )
        ids = [d.job_id for d in done]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE jobs SET status = 'active', attempts = 1, lease_token = 1,"
            " started_at = now() WHERE id = ANY(%s)",
            (ids,),
        )
    db = Database(database_url)
    await db.open()
    try:
        await Store(db).finish_many([(i, 1, "card declined") for i in ids], "failed")
    finally:
        await db.close()
    return ids


def test_dlq_replay_all_counts_first_then_replays_each_once(database_url: str) -> None:
    asyncio.run(dead_letters(database_url, 3))

    dry = cli(database_url, "dlq", "replay-all", "--type", "test.fail")
    assert "3 dead letters match (dry run: pass --yes to replay them)" in dry.stdout

    done = json.loads(cli(database_url, "dlq", "replay-all", "--yes", "--json").stdout)
    assert (done["dry_run"], done["matched"], len(done["replayed"])) == (False, 3, 3)
    with psycopg.connect(database_url) as conn:
        replays = conn.execute("SELECT count(*) FROM jobs WHERE replay_of IS NOT NULL").fetchone()
    assert replays == (3,)

    again = cli(database_url, "dlq", "replay-all", "--yes")
    assert "replayed 0 of 0" in again.stdout


def test_dlq_replay_all_on_a_terminal_shows_its_progress(database_url: str) -> None:
    asyncio.run(dead_letters(database_url, 2))

    code, drawn = on_a_terminal(database_url, "dlq", "replay-all", "--yes")

    assert code == 0, drawn
    assert "replaying" in drawn and BAR in drawn
    assert "replayed 2 of 2" in drawn


def test_dlq_replay_all_names_an_unknown_queue(database_url: str) -> None:
    done = cli(database_url, "dlq", "replay-all", "--queue", "mony", check=False)

    assert done.returncode == 1
    assert "unknown queue 'mony'" in done.stderr
