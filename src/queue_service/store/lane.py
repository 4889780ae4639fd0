"""The insert lane: inserts that run alone, on a few dedicated asyncpg connections.

An enqueue of one job is one short statement whose cost, on the client, is
mostly the driver: psycopg's async layer and the pool's check-out cost about
2.5x asyncpg's on a held connection (decision 0008: 340 vs 140 µs of client
CPU per enqueue, 0.52 vs 0.84 of the plain-SQL baseline's rate). So the
store sends that statement, and a plain batch's COPY (asyncpg's binary
format), when they run alone (no caller's transaction), through up to
``size`` asyncpg connections held for the purpose; everything else
(caller's transactions, keyed batches, claims, LISTEN, the API's
tenant-scoped statements) stays on the psycopg pool.

The lane never queues and is never the reason an enqueue fails where the
pool would have served it: when every lane connection is busy, when it
cannot connect (then it rests for a few seconds), or when an idle
connection turns out closed or stale, ``try_execute`` returns False and the
caller uses the pool. A failure after the statement was sent is raised (it
may have committed), as ``psycopg.OperationalError`` when the connection
was lost, so every caller's transient-error handling (runtime/backoff.py)
treats both drivers alike; errors the server reports keep their SQLSTATE.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import psycopg
import structlog

log = structlog.get_logger("queue_service.lane")

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def to_dollar(sql: str) -> tuple[str, list[str]]:
    """``%(name)s`` -> ``$n`` (a repeated name reuses its number); the names in order.

    The statements stay the ones reviewed in store/sql; only the placeholder
    syntax differs between the drivers.
    """
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    return _PLACEHOLDER.sub(number, sql).replace("%%", "%"), names


# A lane connection idle longer than this is replaced before use, so one a
# firewall or NAT dropped silently is not the one an enqueue fails on.
MAX_IDLE_SECONDS = 60.0
# After a failed connect the lane stands aside (the pool serves) this long.
CONNECT_COOLDOWN_SECONDS = 5.0


class InsertLane:
    """Up to ``size`` asyncpg connections acting as ``role``, opened on first use.

    Only what a caller could not tell from the pool path is ever raised: a
    connection the lane cannot open, or an idle one found closed, sends the
    statement to the pool (``try_execute`` returns False) with nothing sent;
    a failure after the statement was sent is raised, since it may have
    committed.
    """

    def __init__(
        self, conninfo: str, role: str, *, size: int = 2, application_name: str = ""
    ) -> None:
        self.conninfo = conninfo
        self.role = role
        self.size = size
        self.application_name = application_name
        self._idle: list[tuple[Any, float]] = []  # (asyncpg.Connection, idle since)
        self._open = 0
        self._closed = False
        self._resting_until = 0.0
        self._statements: dict[str, tuple[str, list[str]]] = {}
        # asyncpg parses URLs (the embedded server's unix-socket form too), not
        # libpq's key=value strings: those keep to the pool.
        self.usable = conninfo.startswith(("postgresql://", "postgres://"))
        if not self.usable:
            log.info("insert lane off: DATABASE_URL is not a postgresql:// URL")

    @property
    def connections(self) -> int:
        """Connections open now (idle or in use)."""
        return self._open

    async def try_execute(self, sql: str, params: Mapping[str, Any]) -> bool:
        """Run one autocommit statement on a lane connection; False if the lane
        cannot take it now (the caller then uses the pool). Raises what the
        statement raises once sent."""
        conn = await self._checkout()
        if conn is None:
            return False
        try:
            query, names = self._statement(sql)
            await conn.execute(query, *[params[n] for n in names])
        except BaseException as exc:
            self._fail(conn, exc)
        await self._release(conn)
        return True

    async def try_copy(
        self,
        prepare_sql: str,
        copy_sql: str,
        records: Sequence[Sequence[Any]],
        then_sql: str,
        then_params: Mapping[str, Any],
    ) -> bool:
        """In one transaction: ``prepare_sql`` (a simple query), ``records``
        into the table and columns ``copy_sql`` names (``COPY t (a, b) FROM
        STDIN``; asyncpg sends them in the binary format), then ``then_sql``.
        False if the lane cannot take it now; raises what the work raises."""
        conn = await self._checkout()
        if conn is None:
            return False
        try:
            table, columns = _copy_target(copy_sql)
            query, names = self._statement(then_sql)
            async with conn.transaction():
                await conn.execute(prepare_sql)
                await conn.copy_records_to_table(table, records=records, columns=columns)
                await conn.execute(query, *[then_params[n] for n in names])
        except BaseException as exc:
            self._fail(conn, exc)
        await self._release(conn)
        return True

    def _fail(self, conn: Any, exc: BaseException) -> NoReturn:
        """Close a connection whose state is unknown (a cancelled or failed
        statement) and raise ``exc``, as psycopg's error if the connection was lost."""
        self._discard(conn)
        mapped = _as_psycopg(exc)
        if mapped is exc:
            raise exc
        raise mapped from exc

    async def _release(self, conn: Any) -> None:
        if self._closed:
            self._open -= 1
            await conn.close()
        else:
            self._idle.append((conn, time.monotonic()))

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            self._open -= 1
            try:
                await conn.close(timeout=5)
            except Exception:
                conn.terminate()

    async def _checkout(self) -> Any:
        if self._closed or not self.usable:
            return None
        now = time.monotonic()
        while self._idle:
            conn, since = self._idle.pop()
            if not conn.is_closed() and now - since < MAX_IDLE_SECONDS:
                return conn
            self._discard(conn)
        if self._open >= self.size or now < self._resting_until:
            return None
        self._open += 1
        try:
            return await self._connect()
        except Exception as exc:
            self._open -= 1
            self._resting_until = time.monotonic() + CONNECT_COOLDOWN_SECONDS
            log.warning(
                "insert lane cannot connect; enqueues use the pool",
                error=f"{type(exc).__name__}: {exc}",
                retry_in_seconds=CONNECT_COOLDOWN_SECONDS,
            )
            return None
        except BaseException:
            self._open -= 1
            raise

    def _discard(self, conn: Any) -> None:
        self._open -= 1
        conn.terminate()

    def _statement(self, sql: str) -> tuple[str, list[str]]:
        found = self._statements.get(sql)
        if found is None:
            found = self._statements[sql] = to_dollar(sql)
        return found

    async def _connect(self) -> Any:
        import asyncpg

        # The role as a start-up parameter: the session acts as it from the
        # first statement, as the pool's SET ROLE does.
        return await asyncpg.connect(
            self.conninfo,
            timeout=10,
            server_settings={"application_name": self.application_name, "role": self.role},
        )


_COPY_TARGET = re.compile(r"^COPY\s+(\w+)\s*\(([^)]*)\)\s+FROM\s+STDIN\s*\Z", re.I | re.M)


def _copy_target(copy_sql: str) -> tuple[str, list[str]]:
    """``COPY t (a, b) FROM STDIN`` -> ("t", ["a", "b"]): one statement text
    for both drivers."""
    match = _COPY_TARGET.search(copy_sql)
    if match is None:
        raise ValueError(f"not a COPY ... FROM STDIN with a column list: {copy_sql!r}")
    return match[1], [c.strip() for c in match[2].split(",")]


def _as_psycopg(exc: BaseException) -> BaseException:
    """Connection-level asyncpg failures as psycopg.OperationalError (transient
    to every caller); anything else, including server errors with their
    SQLSTATE, unchanged."""
    import asyncpg

    if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.InterfaceError | OSError):
        return psycopg.OperationalError(f"insert lane: {type(exc).__name__}: {exc}")
    return exc
