"""Start-up and command failures caused by configuration or environment, as an
operator meets them: real `queue-service` processes, one or two lines on
stderr naming the setting and what to do, exit 2 (a setting is wrong) or 1
(the environment is not ready), and no traceback unless
QUEUE_SERVICE_LOG_LEVEL=debug (issue 10, cli/failures.py)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.support.processes import REPO, TEST_JWT_SECRET

# Every command that starts the service or talks to its database.
COMMANDS = {
    "serve": ["serve"],
    "api": ["api"],
    "worker": ["worker"],
    "migrate": ["migrate"],
    "enqueue": ["enqueue", "test.echo", "--tenant", "acme", "--data", '{"value": 1}'],
}
# A port nothing listens on: connections are refused at once.
REFUSED_URL = "postgresql://postgres@127.0.0.1:1/queue"


def run(*args: str, timeout: float = 90, **env: str) -> subprocess.CompletedProcess[str]:
    """`queue-service args` with a development environment plus ``env``; an
    empty value removes the variable."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("QUEUE_SERVICE_", "DATABASE_", "JWT_"))
    }
    full = {
        **base,
        "PYTHONPATH": str(REPO),
        "QUEUE_SERVICE_PROCESSORS": "tests.support.processors:PROCESSORS",
        "QUEUE_SERVICE_ENV": "development",
        "QUEUE_SERVICE_PORT": "0",
        "JWT_SECRET": TEST_JWT_SECRET,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "queue_service.cli", *args],
        env={k: v for k, v in full.items() if v},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def message(done: subprocess.CompletedProcess[str]) -> str:
    """The error as printed: stderr without the JSON log lines before it,
    checked to be one or two lines and free of tracebacks."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line and not line.startswith("{")]
    assert 1 <= len(lines) <= 2, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    return "\n".join(lines)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unreachable_database_fails_fast_naming_database_url(command: str) -> None:
    done = run(*COMMANDS[command], DATABASE_URL=REFUSED_URL, QUEUE_SERVICE_AUTO_MIGRATE="false")
    assert done.returncode == 1, done.stderr
    said = message(done)
    assert "cannot connect to PostgreSQL at 127.0.0.1:1/queue (DATABASE_URL)" in said
    assert "Connection refused" in said and "fix: " in said
    # Not the pool's 30 s of retries.
    assert "error connecting in" not in done.stderr


@pytest.mark.parametrize("command", ["migrate", "worker"])
def test_an_unknown_host_is_named_with_the_setting(command: str) -> None:
    done = run(*COMMANDS[command], DATABASE_URL="postgresql://queue@db.invalid:5432/queue")
    assert done.returncode == 1
    said = message(done)
    assert "db.invalid" in said and "DATABASE_URL" in said


@pytest.mark.parametrize("command", ["serve", "enqueue"])
def test_a_database_url_that_is_not_a_url_is_a_configuration_error(command: str) -> None:
    done = run(*COMMANDS[command], DATABASE_URL="db.internal:5432/queue")
    assert done.returncode == 2
    said = message(done)
    assert "DATABASE_URL is not a PostgreSQL connection URL" in said
    assert "postgresql://USER:PASSWORD@HOST:5432/DATABASE" in said


def test_a_database_that_refuses_the_user_is_a_configuration_error(database_url: str) -> None:
    nobody = psycopg.conninfo.make_conninfo(database_url, user="nobody_" + secrets.token_hex(3))
    done = run("migrate", DATABASE_URL=nobody)
    assert done.returncode == 2
    said = message(done)
    assert "does not exist" in said and "check the user, password, database name" in said
    assert "DATABASE_URL" in said


def test_the_readme_production_block_names_the_missing_secret_file(database_url: str) -> None:
    # README "Against a real PostgreSQL", copied as written on a machine
    # without /run/secrets/jwt.
    done = run(
        "api",
        DATABASE_URL=database_url,
        JWT_SECRET="",
        JWT_SECRET_FILE="/run/secrets/jwt-missing",
        QUEUE_SERVICE_ENV="production",
    )
    assert done.returncode == 2
    said = message(done)
    assert "JWT_SECRET_FILE=/run/secrets/jwt-missing cannot be read: No such file" in said
    assert "or set JWT_SECRET itself" in said


def test_an_unreadable_secret_file_is_named(tmp_path: Path, database_url: str) -> None:
    directory = tmp_path / "secrets"
    directory.mkdir()
    done = run("migrate", DATABASE_URL="", DATABASE_URL_FILE=str(directory))
    assert done.returncode == 2
    assert "DATABASE_URL_FILE=" in message(done)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


@pytest.mark.parametrize("command", ["serve", "api"])
def test_a_busy_port_is_one_message_not_a_traceback(
    command: str, database_url: str, busy_port: int
) -> None:
    done = run(command, DATABASE_URL=database_url, QUEUE_SERVICE_PORT=str(busy_port))
    assert done.returncode == 1
    said = message(done)
    assert f"cannot listen on 127.0.0.1:{busy_port}" in said and "QUEUE_SERVICE_PORT" in said
    assert "the port is in use" in said
    # Refused before the database is opened or a worker claims anything.
    assert "applied migrations" not in done.stderr and "worker started" not in done.stderr


def test_a_host_that_is_not_this_machine_s_is_a_configuration_error(database_url: str) -> None:
    done = run(
        "api", DATABASE_URL=database_url, QUEUE_SERVICE_HOST="192.0.2.1", QUEUE_SERVICE_PORT="8080"
    )
    assert done.returncode == 2
    said = message(done)
    assert "cannot listen on 192.0.2.1:8080" in said and "not one of this host's" in said


@pytest.mark.parametrize("command", ["serve", "worker", "enqueue"])
def test_bad_setting_values_name_the_variable(command: str, database_url: str) -> None:
    done = run(*COMMANDS[command], DATABASE_URL=database_url, QUEUE_SERVICE_POOL_SIZE="one")
    assert done.returncode == 2
    assert "QUEUE_SERVICE_POOL_SIZE" in message(done)


def test_an_api_without_a_jwt_key_in_production_names_the_settings(database_url: str) -> None:
    done = run("api", DATABASE_URL=database_url, JWT_SECRET="", QUEUE_SERVICE_ENV="production")
    assert done.returncode == 2
    said = message(done)
    assert "no JWT key: set JWT_SECRET (or JWT_SECRET_FILE)" in said


@pytest.mark.parametrize("command", ["serve", "enqueue"])
def test_processors_that_cannot_be_imported_name_the_setting(
    command: str, database_url: str
) -> None:
    done = run(
        *COMMANDS[command],
        DATABASE_URL=database_url,
        QUEUE_SERVICE_PROCESSORS="no_such_module:PROCESSORS",
    )
    assert done.returncode == 2
    said = message(done)
    assert "cannot import 'no_such_module'" in said and "QUEUE_SERVICE_PROCESSORS" in said


@pytest.mark.parametrize("command", ["serve", "worker", "enqueue"])
def test_missing_migrations_say_to_run_migrate(command: str, empty_database_url: str) -> None:
    done = run(
        *COMMANDS[command], DATABASE_URL=empty_database_url, QUEUE_SERVICE_AUTO_MIGRATE="false"
    )
    assert done.returncode == 1
    said = message(done)
    assert "lacks" in said and "0001_engine" in said
    assert "run `queue-service migrate`" in said


@pytest.mark.parametrize("command", ["serve", "worker", "api", "enqueue"])
def test_production_without_database_url_refuses_to_start(command: str) -> None:
    done = run(*COMMANDS[command], QUEUE_SERVICE_ENV="production", DATABASE_URL="")
    assert done.returncode == 2
    said = message(done)
    assert "QUEUE_SERVICE_ENV=production needs DATABASE_URL" in said


def test_a_worker_behind_pgbouncer_without_a_listen_url_is_refused(database_url: str) -> None:
    done = run("worker", DATABASE_URL=database_url, QUEUE_SERVICE_PGBOUNCER="true")
    assert done.returncode == 2
    said = message(done)
    assert "QUEUE_SERVICE_PGBOUNCER=true needs DATABASE_LISTEN_URL" in said
    assert "QUEUE_SERVICE_LEADER_CANDIDATE=false" in said


def test_an_unreachable_listen_url_is_named(database_url: str) -> None:
    done = run("worker", DATABASE_URL=database_url, DATABASE_LISTEN_URL=REFUSED_URL)
    assert done.returncode == 1
    assert "(DATABASE_LISTEN_URL)" in message(done)


def test_debug_logging_adds_the_traceback() -> None:
    done = run("migrate", DATABASE_URL=REFUSED_URL, QUEUE_SERVICE_LOG_LEVEL="debug")
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert "error: cannot connect to PostgreSQL" in done.stderr


@pytest.fixture
def limited_user_url(database_url: str) -> Iterator[str]:
    """A user allowed one connection at a time: the pool's second never comes."""
    name = "qs_limited_" + secrets.token_hex(4)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT 1 IN ROLE queue_service_engine").format(
                sql.Identifier(name)
            )
        )
        conn.execute(
            sql.SQL("GRANT SELECT ON schema_migrations TO {}").format(sql.Identifier(name))
        )
    try:
        yield psycopg.conninfo.make_conninfo(database_url, user=name)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("REVOKE ALL ON schema_migrations FROM {}").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.mark.slow
def test_a_pool_that_cannot_fill_says_so_naming_the_pool_size(limited_user_url: str) -> None:
    done = run(
        "status", DATABASE_URL=limited_user_url, QUEUE_SERVICE_AUTO_MIGRATE="false", timeout=120
    )
    assert done.returncode == 1
    said = message(done)
    assert "no database connection" in said and "QUEUE_SERVICE_POOL_SIZE" in said
