"""The connection pool and the seam every store method runs through.

A method given a caller's connection runs on it (joining the caller's
transaction: transactional enqueue, JobCompleteTx); otherwise it borrows a
pooled autocommit connection for one statement.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import psycopg
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool

Conn = psycopg.AsyncConnection[Any]

set_json_loads(orjson.loads)
set_json_dumps(orjson.dumps)


# Long enough to ride out a restart or a failover; short enough that the pool's
# doubling delay never leaves a recovered database unused for more than ~30 s.
RECONNECT_TIMEOUT_SECONDS = 60.0


def json_text(value: Any) -> str:
    """Serialise for a ``::text::jsonb`` parameter (faster than per-row adapters)."""
    return orjson.dumps(value).decode()


async def _configure(conn: Conn) -> None:
    await conn.set_autocommit(True)


class Database:
    """A pool of autocommit connections to one PostgreSQL database."""

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        prepare: bool = True,
        application_name: str = "queue-service",
    ) -> None:
        self.conninfo = conninfo
        kwargs: dict[str, Any] = {"application_name": application_name}
        # PgBouncer in transaction mode cannot keep prepared statements.
        kwargs["prepare_threshold"] = 2 if prepare else None
        self.pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=kwargs,
            configure=_configure,
            open=False,
            # How long the pool itself keeps reconnecting (backing off 1, 2, 4... s)
            # while callers wait for a connection. 0 would mean "give up after one
            # retry": callers then sat out the whole getconn timeout (30 s) after the
            # database came back. Past this, each caller's own retry starts a new round.
            reconnect_timeout=RECONNECT_TIMEOUT_SECONDS,
            name="queue-service",
        )

    async def open(self, wait_seconds: float = 30.0) -> None:
        await self.pool.open(wait=True, timeout=wait_seconds)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def connection(self, conn: Conn | None = None) -> AsyncIterator[Conn]:
        if conn is not None:
            yield conn
            return
        async with self.pool.connection() as pooled:
            yield pooled

    @asynccontextmanager
    async def transaction(self, conn: Conn | None = None) -> AsyncIterator[Conn]:
        """A transaction on the caller's connection (a savepoint if one is open) or a pooled one."""
        async with self.connection(conn) as c, c.transaction():
            yield c
