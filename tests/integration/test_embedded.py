"""The embedded PostgreSQL development store starts, stops, and keeps its data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from queue_service.settings import Settings
from queue_service.store.embedded import (
    EmbeddedPostgresError,
    database_conninfo,
    start_embedded,
)

pytestmark = pytest.mark.skipif(
    os.environ.get("QUEUE_SERVICE_TEST_EMBEDDED") != "1"
    and bool(os.environ.get("TEST_DATABASE_URL")),
    reason="TEST_DATABASE_URL is set; QUEUE_SERVICE_TEST_EMBEDDED=1 runs these anyway",
)


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: as root the library chmods every parent of the data directory.
    path = Path(tempfile.mkdtemp(prefix="qs-test-embedded-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _server_version(conninfo: str) -> str:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT version()").fetchone()
    assert row is not None
    return str(row[0])


def test_starts_stops_and_keeps_data(scratch_dir: Path) -> None:
    data_dir = scratch_dir / "nested" / "pgdata"

    with start_embedded(data_dir) as server:
        assert server.conninfo.startswith("postgresql://")
        assert "PostgreSQL 18." in _server_version(server.conninfo)
        with psycopg.connect(server.conninfo) as conn:
            conn.execute("CREATE TABLE kept (note text)")
            conn.execute("INSERT INTO kept VALUES ('still here')")
        conninfo = server.conninfo

    assert data_dir.stat().st_mode & 0o777 == 0o700
    assert not (data_dir / "postmaster.pid").exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(conninfo, connect_timeout=2).close()

    server = start_embedded(data_dir)
    try:
        with psycopg.connect(server.conninfo) as conn:
            assert conn.execute("SELECT note FROM kept").fetchall() == [("still here",)]
    finally:
        server.stop()
    server.stop()  # idempotent


@pytest.mark.slow
def test_a_server_left_by_a_killed_process_is_reused_then_stopped(scratch_dir: Path) -> None:
    data_dir = scratch_dir / "pgdata"
    starter = (
        "import sys, pathlib, time\n"
        "from queue_service.store.embedded import start_embedded\n"
        "start_embedded(pathlib.Path(sys.argv[1]))\n"
        "print('up', flush=True)\n"
        "time.sleep(600)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", starter, str(data_dir)], stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "up"
        finally:
            child.kill()  # SIGKILL: no atexit, the server keeps running
    orphan_pid = int((data_dir / "postmaster.pid").read_text().split()[0])

    with start_embedded(data_dir) as server:
        assert int((data_dir / "postmaster.pid").read_text().split()[0]) == orphan_pid
        assert "PostgreSQL 18." in _server_version(server.conninfo)

    assert not (data_dir / "postmaster.pid").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="root only")
def test_as_root_the_server_runs_without_root_group(scratch_dir: Path) -> None:
    with start_embedded(scratch_dir / "pgdata") as server:
        pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
    ids = {
        line.split(":")[0]: line.split()[1:] for line in status if line.startswith(("Uid", "Gid"))
    }
    assert "0" not in ids["Uid"]
    assert "0" not in ids["Gid"]


def test_a_file_in_place_of_the_data_dir_is_a_clear_error(scratch_dir: Path) -> None:
    blocker = scratch_dir / "pgdata"
    blocker.write_text("not a directory")
    with pytest.raises(EmbeddedPostgresError, match="not a directory"):
        start_embedded(blocker)


def test_a_non_empty_foreign_directory_is_refused(scratch_dir: Path) -> None:
    (scratch_dir / "pgdata").mkdir()
    (scratch_dir / "pgdata" / "notes.txt").write_text("mine")
    with pytest.raises(EmbeddedPostgresError, match="not a PostgreSQL data directory"):
        start_embedded(scratch_dir / "pgdata")


def test_database_conninfo_prefers_database_url(scratch_dir: Path) -> None:
    settings = Settings(
        database_url=SecretStr("postgresql://example.invalid/db"),
        queue_service_data_dir=scratch_dir,
    )
    with database_conninfo(settings) as conninfo:
        assert conninfo == "postgresql://example.invalid/db"
    assert not (scratch_dir / "pgdata").exists()


def test_database_conninfo_runs_embedded_without_database_url(scratch_dir: Path) -> None:
    settings = Settings(
        database_url=None, queue_service_data_dir=scratch_dir, queue_service_env="development"
    )
    with database_conninfo(settings) as conninfo:
        assert "PostgreSQL 18." in _server_version(conninfo)
    assert (scratch_dir / "pgdata" / "PG_VERSION").exists()
    assert not (scratch_dir / "pgdata" / "postmaster.pid").exists()
