"""Dedicated sessions: the leader's advisory lock and the LISTEN connection.

Both need one long-lived connection of their own (a direct or session-mode
one: DATABASE_LISTEN_URL when the main URL goes through PgBouncer).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg import sql

from queue_service.store.queries import Q

JOBS_CHANNEL = "queue_service_jobs"
CONTROL_CHANNEL = "queue_service_control"
LISTENING = ""  # the pseudo-channel Listener yields once LISTEN is in place
LEADER_LOCK_ID = 0x71732D6C65616400  # "qs-lead"
# A half-open TCP connection must not keep a dead leader's lock or a deaf
# listener alive for the kernel's two-hour default.
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


class LeaderSession:
    """Holds the leader advisory lock on its own connection.

    PostgreSQL drops the lock the moment that connection dies, so a killed
    leader is replaced at the next election attempt of any other instance.
    """

    def __init__(self, conninfo: str, interval_seconds: float = 5.0) -> None:
        self._conninfo = conninfo
        self._idle_timeout_ms = max(3 * interval_seconds, 2.0) * 1000
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def try_acquire(self) -> bool:
        """Take the lock if free; True while this session holds it."""
        if self._conn is not None and not self._conn.closed:
            return await self.still_held()
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            application_name="queue-service leader",
            **KEEPALIVES,
        )
        cur = await conn.execute(Q["leader_try_lock"], {"lock": LEADER_LOCK_ID})
        row = await cur.fetchone()
        if row and row[0]:
            # A frozen (SIGSTOPped) leader keeps its connection, and with it
            # the lock. The leader runs a statement every interval, so a
            # session idle for three intervals is a leader that stopped:
            # PostgreSQL ends it and another instance takes over.
            await conn.execute(
                sql.SQL("SET idle_session_timeout = {}").format(
                    sql.Literal(f"{int(self._idle_timeout_ms)}ms")
                )
            )
            self._conn = conn
            return True
        await conn.close()
        return False

    async def still_held(self) -> bool:
        """Prove the session (and so the lock) is alive with a round trip."""
        if self._conn is None:
            return False
        try:
            await self._conn.execute("SELECT 1")
        except psycopg.Error:
            await self.release()
            return False
        return True

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.closed:
            return
        # If this fails the connection is going anyway, and the lock with it.
        with contextlib.suppress(psycopg.Error):
            await conn.execute(Q["leader_unlock"], {"lock": LEADER_LOCK_ID})
        await conn.close()


class Listener:
    """A LISTEN connection yielding (channel, payload) until it breaks."""

    def __init__(self, conninfo: str, channels: tuple[str, ...]) -> None:
        self._conninfo = conninfo
        self._channels = channels

    async def notifications(self) -> AsyncIterator[tuple[str, str]]:
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo,
            autocommit=True,
            application_name="queue-service listener",
            **KEEPALIVES,
        )
        try:
            for channel in self._channels:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            # Tell the caller it is listening: whatever was sent before is
            # found by claiming now.
            yield LISTENING, ""
            async for note in conn.notifies():
                yield note.channel, note.payload
        finally:
            await asyncio.shield(conn.close())
