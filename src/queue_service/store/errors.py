"""What a database error means to the layers above, which never import the
driver: whether a reconnect can cure it, or whether the request's own values
were unstorable."""

from __future__ import annotations

import psycopg
import psycopg_pool


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
