"""The insert lane: single-job inserts on a few dedicated asyncpg connections.

An enqueue of one job is one short statement whose cost, on the client, is
mostly the driver: psycopg's async layer and the pool's check-out cost about
2.5x asyncpg's on a held connection (decision 0008: 340 vs 140 µs of client
CPU per enqueue, 0.57 vs 0.85 of the plain-SQL baseline's rate). So the
store sends that one statement, when it runs alone (autocommit, no caller's
transaction), through up to ``size`` asyncpg connections held for the
purpose; everything else (transactions, COPY, claims, LISTEN, the API's
tenant-scoped statements) stays on the psycopg pool.

The lane never queues: when every lane connection is busy, or it is off,
``try_execute`` returns False and the caller uses the pool. A connection
that fails is closed and forgotten; the next use opens a new one.
Connection-level failures surface as ``psycopg.OperationalError`` so every
caller's transient-error handling (runtime/backoff.py) treats both drivers
alike; errors the server reports keep their SQLSTATE.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import psycopg

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


class InsertLane:
    """Up to ``size`` asyncpg connections acting as ``role``, opened on first use."""

    def __init__(
        self, conninfo: str, role: str, *, size: int = 2, application_name: str = ""
    ) -> None:
        self.conninfo = conninfo
        self.role = role
        self.size = size
        self.application_name = application_name
        self._idle: list[Any] = []  # asyncpg.Connection
        self._open = 0
        self._closed = False
        self._statements: dict[str, tuple[str, list[str]]] = {}

    @property
    def connections(self) -> int:
        """Connections open now (idle or in use)."""
        return self._open

    async def try_execute(self, sql: str, params: Mapping[str, Any]) -> bool:
        """Run one autocommit statement on a lane connection; False if none is
        free (the caller then uses the pool). Raises what the statement raises."""
        if self._closed:
            return False
        if self._idle:
            conn = self._idle.pop()
        elif self._open < self.size:
            self._open += 1
            try:
                conn = await self._connect()
            except BaseException:
                self._open -= 1
                raise
        else:
            return False
        try:
            query, names = self._statement(sql)
            await conn.execute(query, *[params[n] for n in names])
        except BaseException as exc:
            # Its state is unknown (a cancelled or failed statement): close it.
            self._open -= 1
            conn.terminate()
            mapped = _as_psycopg(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        if self._closed:
            self._open -= 1
            await conn.close()
        else:
            self._idle.append(conn)
        return True

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self._open -= 1
            try:
                await conn.close(timeout=5)
            except Exception:
                conn.terminate()

    def _statement(self, sql: str) -> tuple[str, list[str]]:
        found = self._statements.get(sql)
        if found is None:
            found = self._statements[sql] = to_dollar(sql)
        return found

    async def _connect(self) -> Any:
        import asyncpg

        try:
            # The role as a start-up parameter: the session acts as it from
            # the first statement, as the pool's SET ROLE does.
            return await asyncpg.connect(
                self.conninfo,
                timeout=10,
                server_settings={"application_name": self.application_name, "role": self.role},
            )
        except BaseException as exc:
            mapped = _as_psycopg(exc)
            if mapped is exc:
                raise
            raise mapped from exc


def _as_psycopg(exc: BaseException) -> BaseException:
    """Connection-level asyncpg failures as psycopg.OperationalError (transient
    to every caller); anything else, including server errors with their
    SQLSTATE, unchanged."""
    import asyncpg

    if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.InterfaceError | OSError):
        return psycopg.OperationalError(f"insert lane: {type(exc).__name__}: {exc}")
    if isinstance(exc, TimeoutError):
        return psycopg.OperationalError(f"insert lane: timed out connecting: {exc}")
    return exc
