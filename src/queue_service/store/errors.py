"""What a database error means to the layers above, which never import the
driver: whether a reconnect can cure it, or whether the request's own values
were unstorable."""

from __future__ import annotations

import psycopg
import psycopg_pool


class PoolWaitTimeout(psycopg_pool.PoolTimeout):
    """No connection of a pool came free within its wait: every connection
    stayed busy (overload, slow statements, a lock queue), or the database
    could not be reached to open one. Transient like any PoolTimeout; it
    names the pool, its size and its wait, and the setting that sets the
    wait when one does (e.g. QUEUE_SERVICE_API_POOL_TIMEOUT_SECONDS)."""

    def __init__(
        self, pool: str, max_size: int, timeout: float, timeout_setting: str | None
    ) -> None:
        super().__init__(
            f"no connection of the {pool!r} pool ({max_size} connections) came free"
            f" within {timeout:g} s"
        )
        self.pool = pool
        self.max_size = max_size
        self.timeout = timeout
        self.timeout_setting = timeout_setting


def is_transient(exc: BaseException) -> bool:
    """Errors a reconnect can cure: connection loss, shutdown, pool timeouts."""
    if isinstance(exc, psycopg_pool.PoolTimeout | psycopg.OperationalError | OSError):
        return True
    # admin_shutdown, crash_shutdown, cannot_connect_now, terminated backends.
    sqlstate = getattr(exc, "sqlstate", None)
    return bool(sqlstate and sqlstate.startswith(("57P", "08")))


# A value PostgreSQL refuses (a NUL character, an out-of-range number): the
# request's fault, and nothing was written.
UnstorableValueError = psycopg.errors.DataError
