"""Numbered, forward-only SQL migrations, applied under an advisory lock.

Several instances may start at once: each takes the same session advisory
lock, so exactly one applies a pending file while the others wait and then
find nothing left to do. The engine's files come first, then each plug-in's
(``MigrationSet``: its own namespace, numbered 1..n), recorded with their
checksums in the same history table.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources

import psycopg

from queue_service.core.migration_sets import ENGINE_NAMESPACE, MigrationSet

# Any 64-bit constant unique to this purpose ("qs-migr" in ASCII).
MIGRATION_LOCK_ID = 0x71732D6D69677200
NO_TRANSACTION_MARKER = "-- queue-service: no-transaction"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_ENGINE_PACKAGE = "queue_service.store.migrations"


class MigrationError(RuntimeError):
    """The database's migration history does not match the shipped files."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str
    namespace: str = ENGINE_NAMESPACE

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def transactional(self) -> bool:
        # CREATE INDEX CONCURRENTLY and friends cannot run in a transaction.
        return not self.sql.lstrip().startswith(NO_TRANSACTION_MARKER)

    @property
    def label(self) -> str:
        """``0007_money`` for the engine's, ``greetings/0001_sent`` for a plug-in's."""
        own = f"{self.version:04d}_{self.name}"
        return own if self.namespace == ENGINE_NAMESPACE else f"{self.namespace}/{own}"


def shipped_migrations() -> list[Migration]:
    """The engine's migration files packaged with this version, in order."""
    return _read(_ENGINE_PACKAGE, ENGINE_NAMESPACE)


def plugin_migrations(declared: MigrationSet) -> list[Migration]:
    """A plug-in's migration files, in order."""
    return _read(declared.package, declared.namespace)


def migration_plan(plugins: Iterable[MigrationSet] = ()) -> list[Migration]:
    """Every migration in the order applied: the engine's, then each plug-in
    namespace's (sorted by namespace; a plug-in's tables may refer to the
    engine's, never the other way round)."""
    by_namespace: dict[str, MigrationSet] = {}
    for declared in plugins:
        seen = by_namespace.setdefault(declared.namespace, declared)
        if seen.package != declared.package:
            raise MigrationError(
                f"migration namespace {declared.namespace!r} is declared twice: by"
                f" {seen.package!r} and by {declared.package!r}; give each plug-in its own"
            )
    plan = shipped_migrations()
    for namespace in sorted(by_namespace):
        plan.extend(plugin_migrations(by_namespace[namespace]))
    return plan


def _read(package: str, namespace: str) -> list[Migration]:
    try:
        files = list(resources.files(package).iterdir())
    except (ModuleNotFoundError, TypeError) as exc:
        raise MigrationError(
            f"migrations of {namespace!r}: cannot read package {package!r} ({exc}); it must be"
            " an importable package holding NNNN_name.sql files"
        ) from None
    found = [
        Migration(int(match[1]), match[2], entry.read_text("utf-8"), namespace)
        for entry in files
        if (match := _NAME.match(entry.name))
    ]
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(
            f"migration files of {namespace!r} ({package}) must be numbered 1..n without gaps,"
            f" got {versions}"
        )
    return found


# The history's own shape belongs to the runner: it must exist before any
# migration runs. Before plug-ins it had no namespace (every row the engine's).
_HISTORY_DDL = f"""
CREATE TABLE IF NOT EXISTS schema_migrations (
    namespace  text        NOT NULL DEFAULT '{ENGINE_NAMESPACE}',
    version    integer     NOT NULL,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, version)
)
"""
_HISTORY_HAS_NAMESPACE = """
SELECT EXISTS (
    SELECT 1 FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = 'schema_migrations'
      AND column_name = 'namespace')
"""
_HISTORY_ADD_NAMESPACE = f"""
ALTER TABLE schema_migrations
    ADD COLUMN namespace text NOT NULL DEFAULT '{ENGINE_NAMESPACE}',
    DROP CONSTRAINT schema_migrations_pkey,
    ADD PRIMARY KEY (namespace, version)
"""

Conn = psycopg.Connection[tuple[object, ...]]


def apply_migrations(
    conninfo: str,
    plugins: Iterable[MigrationSet] = (),
    on_apply: Callable[[str], None] | None = None,
) -> list[str]:
    """Apply every pending migration (the engine's, then ``plugins``'); return
    the labels of those applied. ``on_apply`` hears each label as it starts
    (the CLI's progress display)."""
    plan = migration_plan(plugins)  # files read and checked before any lock
    applied: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            _prepare_history(conn)
            done = _applied(conn)
            for migration in plan:
                key = (migration.namespace, migration.version)
                if key in done:
                    if done[key] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.label} was changed after it was applied;"
                            " migrations are forward-only: add a new file"
                        )
                    continue
                if on_apply is not None:
                    on_apply(migration.label)
                _apply_one(conn, migration)
                applied.append(migration.label)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    return applied


def pending_migrations(conninfo: str, plugins: Iterable[MigrationSet] = ()) -> list[str]:
    """Labels of migrations the database has not applied yet."""
    plan = migration_plan(plugins)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        done: dict[tuple[str, int], str] = {}
        if exists and exists[0]:
            done = _applied(conn)
    return [m.label for m in plan if (m.namespace, m.version) not in done]


def _prepare_history(conn: Conn) -> None:
    conn.execute(_HISTORY_DDL)
    row = conn.execute(_HISTORY_HAS_NAMESPACE).fetchone()
    if row is not None and not row[0]:
        conn.execute(_HISTORY_ADD_NAMESPACE)


def _applied(conn: Conn) -> dict[tuple[str, int], str]:
    row = conn.execute(_HISTORY_HAS_NAMESPACE).fetchone()
    if row is not None and not row[0]:  # a history from before plug-ins: all the engine's
        rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
        return {(ENGINE_NAMESPACE, int(str(r[0]))): str(r[1]) for r in rows}
    rows = conn.execute("SELECT namespace, version, checksum FROM schema_migrations").fetchall()
    return {(str(r[0]), int(str(r[1]))): str(r[2]) for r in rows}


def _apply_one(conn: Conn, migration: Migration) -> None:
    record = (
        "INSERT INTO schema_migrations (namespace, version, name, checksum) VALUES (%s, %s, %s, %s)"
    )
    params = (migration.namespace, migration.version, migration.name, migration.checksum)
    # The files are trusted, shipped with the engine or an installed plug-in:
    # run them verbatim.
    body = migration.sql.encode()
    if migration.transactional:
        with conn.transaction():
            conn.execute(body)
            conn.execute(record, params)
    else:
        conn.execute(body)
        conn.execute(record, params)
