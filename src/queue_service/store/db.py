"""The connection pool and the seam every store method runs through.

A method given a caller's connection runs on it (joining the caller's
transaction: transactional enqueue, JobCompleteTx); otherwise it borrows a
pooled autocommit connection for one statement.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from queue_service.store.errors import PoolWaitTimeout
from queue_service.store.lane import InsertLane
from queue_service.store.queries import Q

Conn = psycopg.AsyncConnection[Any]

set_json_loads(orjson.loads)
set_json_dumps(orjson.dumps)


# Long enough to ride out a restart or a failover; short enough that the pool's
# doubling delay never leaves a recovered database unused for more than ~30 s.
RECONNECT_TIMEOUT_SECONDS = 60.0


def json_text(value: Any) -> str:
    """Serialise for a ``::text::jsonb`` parameter (faster than per-row adapters)."""
    return orjson.dumps(value).decode()


ENGINE_ROLE = "queue_service_engine"
API_ROLE = "queue_service_api"
TENANT_SETTING = "queue_service.tenant_id"


class Database:
    """A pool of autocommit connections to one PostgreSQL database, each
    acting as ``role`` (row-level security applies to it; see 0003_tenancy)."""

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        prepare: bool = True,
        application_name: str = "queue-service",
        role: str = ENGINE_ROLE,
        timeout: float = 30.0,
        insert_lane: int = 0,
        pgbouncer: bool = False,
        coalesce_seconds: float = 0.0,
        coalesce_max: int = 100,
        timeout_setting: str | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.role = role
        self.application_name = application_name
        # The setting that chose ``timeout``, named when a wait runs out.
        self.timeout_setting = timeout_setting
        # Behind PgBouncer in transaction mode a session's SET ROLE stays on whichever
        # server connection ran it and reaches other clients (measured with pgbouncer
        # 1.18): the role is then set per transaction (SET LOCAL ROLE) instead.
        self.pgbouncer = pgbouncer
        self._begin_as_role = sql.SQL("BEGIN; SET LOCAL ROLE {}").format(sql.Identifier(role))
        # Inserts that run alone, on their own asyncpg connections (store/lane.py).
        self.lane: InsertLane | None = (
            InsertLane(
                conninfo, role, size=insert_lane, application_name=f"{application_name} lane"
            )
            if insert_lane > 0
            else None
        )
        # Single-job enqueues that share commits (store/coalesce.py, which
        # builds on this module: imported here, not at the top).
        from queue_service.store.coalesce import Coalescer

        # At most half the pool on inserts: the rest stays for everything else.
        self.coalescer: Coalescer | None = Coalescer(
            self, coalesce_seconds, coalesce_max, max_in_flight=max(1, max_size // 2)
        )

        async def configure(conn: Conn) -> None:
            await conn.set_autocommit(True)
            if not pgbouncer:
                # Session-wide: every statement on this connection acts as ``role``.
                await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))

        async def configure_claims(conn: Conn) -> None:
            await configure(conn)
            await conn.execute(Q["claim_session_settings"], prepare=False)

        def make_pool(
            name: str, min_size: int, setup: Callable[[Conn], Awaitable[None]]
        ) -> AsyncConnectionPool[Conn]:
            return AsyncConnectionPool(
                conninfo,
                min_size=min_size,
                max_size=max_size,
                # PgBouncer in transaction mode cannot keep prepared statements.
                kwargs={"application_name": name, "prepare_threshold": 2 if prepare else None},
                configure=setup,
                timeout=timeout,
                open=False,
                # How long the pool itself keeps reconnecting (backing off 1, 2, 4... s)
                # while callers wait for a connection. 0 would mean "give up after one
                # retry": callers then sat out the whole getconn timeout (30 s) after the
                # database came back. Past this, each caller's own retry starts a new round.
                reconnect_timeout=RECONNECT_TIMEOUT_SECONDS,
                name=name,
            )

        self.pool: AsyncConnectionPool[Conn] = make_pool(application_name, min_size, configure)
        # Claims run on connections of their own, set up once so that their
        # prepared statements run their generic plans, without JIT (decision
        # 0030): PostgreSQL re-planned every claim, 0.2-0.3 ms each, and the
        # setting cannot be scoped to one statement without a round trip.
        # Made on demand (min 0) by the first claim: a process that never
        # claims (the API) opens none, a worker one per queue it claims from.
        # Nothing is prepared behind PgBouncer: no claim pool there.
        self._claims: AsyncConnectionPool[Conn] | None = (
            make_pool(f"{application_name} claims", 0, configure_claims)
            if prepare and not pgbouncer
            else None
        )
        self._claims_opening = asyncio.Lock()

    async def open(self, wait_seconds: float = 30.0) -> None:
        """Open the pool with its first connections, or raise StartupError
        saying why they could not be made (e.g. the server's connection limit)."""
        try:
            await self.pool.open(wait=True, timeout=wait_seconds)
        except PoolTimeout as exc:
            from queue_service.store.preflight import database_failure

            raise database_failure(exc, self.conninfo) or exc from None

    async def close(self) -> None:
        if self.lane is not None:
            await self.lane.close()
        if self._claims is not None and not self._claims.closed:
            await self._claims.close()
        await self.pool.close()

    @asynccontextmanager
    async def connection(self, conn: Conn | None = None) -> AsyncIterator[Conn]:
        if conn is not None:
            yield conn
            return
        async with self._pooled() as pooled:
            if not self.pgbouncer:
                yield pooled
                return
            # One transaction per borrowing, acting as ``role`` (see __init__).
            await pooled.execute(self._begin_as_role, prepare=False)
            async with _ending_transaction(pooled):
                yield pooled

    @asynccontextmanager
    async def claim_connection(self) -> AsyncIterator[Conn]:
        """A connection for a claim statement: one of the claim pool's, whose
        prepared statements run their generic plans (see __init__), or an
        ordinary one where there is no claim pool."""
        if self._claims is None:
            async with self.connection() as conn:
                yield conn
            return
        if self._claims.closed:
            async with self._claims_opening:
                if self._claims.closed:
                    # Without waiting: a database that is down now makes the
                    # claim wait for a connection (and retry), not fail here.
                    await self._claims.open(wait=False)
        async with self._pooled(self._claims) as conn:
            yield conn

    @asynccontextmanager
    async def _pooled(self, pool: AsyncConnectionPool[Conn] | None = None) -> AsyncIterator[Conn]:
        """A pooled connection, or PoolWaitTimeout naming this pool when none
        came free within its wait (a PoolTimeout from inside the block is
        the block's own and passes unchanged)."""
        pool = pool or self.pool
        entered = False
        try:
            async with pool.connection() as conn:
                entered = True
                yield conn
        except PoolTimeout as exc:
            if entered:
                raise
            raise PoolWaitTimeout(
                pool.name, pool.max_size, pool.timeout, self.timeout_setting
            ) from exc

    @asynccontextmanager
    async def transaction(self, conn: Conn | None = None) -> AsyncIterator[Conn]:
        """A transaction on the caller's connection (a savepoint if one is open) or a pooled one."""
        async with self.connection(conn) as c, c.transaction():
            yield c

    @asynccontextmanager
    async def tenant_transaction(self, tenant_id: str) -> AsyncIterator[BoundDatabase]:
        """A transaction that row-level security scopes to one tenant.

        Everything run through the returned database shares the transaction;
        the setting is local to it, so the pooled connection goes back clean.
        """
        async with self._pooled() as conn:
            # BEGIN and the setting in one simple query: one round trip and
            # one execute (measured 23% more requests/s than pipeline mode,
            # whose machinery costs more CPU than the round trip it saves);
            # psycopg sees the open transaction and nests savepoints in it.
            begin = self._begin_as_role if self.pgbouncer else sql.SQL("BEGIN")
            await conn.execute(
                sql.SQL("{}; SELECT set_config({}, {}, true)").format(
                    begin, sql.Literal(TENANT_SETTING), sql.Literal(tenant_id)
                ),
                prepare=False,
            )
            async with _ending_transaction(conn):
                yield BoundDatabase(conn)


@asynccontextmanager
async def _ending_transaction(conn: Conn) -> AsyncIterator[None]:
    """COMMIT a transaction begun by hand when the block ends, ROLLBACK if it raises."""
    try:
        yield
    except BaseException:
        if not conn.closed:
            try:
                await conn.execute("ROLLBACK")
            except psycopg.Error:
                await conn.close()  # unknown state: the pool will not reuse it
        raise
    await conn.execute("COMMIT")


def in_pipeline(conn: Conn) -> bool:
    """Whether the connection is in pipeline mode (where COPY is not allowed)."""
    return bool(conn.pgconn.pipeline_status)


class BoundDatabase(Database):
    """A Database whose every statement runs on one connection (one transaction)."""

    def __init__(self, conn: Conn) -> None:
        # No pool of its own: open(), close() and tenant_transaction() are not for it.
        self._conn = conn
        self.conninfo = ""
        self.role = ""
        self.application_name = ""
        self.timeout_setting = None
        self.lane = None
        self.coalescer = None  # one transaction: nothing to share
        self.pgbouncer = False
        self._claims = None  # claims go to the bound connection too

    @asynccontextmanager
    async def connection(self, conn: Conn | None = None) -> AsyncIterator[Conn]:
        yield conn or self._conn
