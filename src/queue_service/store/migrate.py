"""Numbered, forward-only SQL migrations, applied under an advisory lock.

Several instances may start at once: each takes the same session advisory
lock, so exactly one applies a pending file while the others wait and then
find nothing left to do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import psycopg

# Any 64-bit constant unique to this purpose ("qs-migr" in ASCII).
MIGRATION_LOCK_ID = 0x71732D6D69677200
NO_TRANSACTION_MARKER = "-- queue-service: no-transaction"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The database's migration history does not match the shipped files."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def transactional(self) -> bool:
        # CREATE INDEX CONCURRENTLY and friends cannot run in a transaction.
        return not self.sql.lstrip().startswith(NO_TRANSACTION_MARKER)


def shipped_migrations() -> list[Migration]:
    """The migration files packaged with this version, in order."""
    found: list[Migration] = []
    for entry in resources.files("queue_service.store.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration files must be numbered 1..n without gaps, got {versions}")
    return found


_HISTORY_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def apply_migrations(conninfo: str, on_apply: Callable[[str], None] | None = None) -> list[str]:
    """Apply every pending migration; return the names of those applied.
    ``on_apply`` hears each name as it starts (the CLI's progress display)."""
    applied: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            conn.execute(_HISTORY_DDL)
            done = {
                row[0]: row[1]
                for row in conn.execute("SELECT version, checksum FROM schema_migrations")
            }
            for migration in shipped_migrations():
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} was changed "
                            "after it was applied; migrations are forward-only: add a new file"
                        )
                    continue
                name = f"{migration.version:04d}_{migration.name}"
                if on_apply is not None:
                    on_apply(name)
                _apply_one(conn, migration)
                applied.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    return applied


def pending_migrations(conninfo: str) -> list[str]:
    """Names of shipped migrations the database has not applied yet."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        done: set[int] = set()
        if exists and exists[0]:
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    return [f"{m.version:04d}_{m.name}" for m in shipped_migrations() if m.version not in done]


def _apply_one(conn: psycopg.Connection[tuple[object, ...]], migration: Migration) -> None:
    record = "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"
    params = (migration.version, migration.name, migration.checksum)
    # The files are trusted, shipped with the package: run them verbatim.
    body = migration.sql.encode()
    if migration.transactional:
        with conn.transaction():
            conn.execute(body)
            conn.execute(record, params)
    else:
        conn.execute(body)
        conn.execute(record, params)
