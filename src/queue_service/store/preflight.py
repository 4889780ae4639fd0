"""The database as a command first meets it: one quick connection, before any
pool, that says what is wrong and which setting to fix.

Without it a wrong ``DATABASE_URL`` surfaced as a driver traceback, or as
30 s of pool warnings and a ``PoolTimeout`` (issue 10). ``database_failure``
is the one translation of driver errors into what an operator can act on;
the command line prints what it returns (cli/failures.py).
"""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import PoolTimeout

from queue_service.errors import StartupError
from queue_service.store.migrate import pending_migrations

# A reachable server answers in milliseconds; an unreachable one (a dropped
# SYN, a blackholed address) would otherwise hold start-up for the kernel's
# TCP timeout. A URL's own connect_timeout wins.
CONNECT_TIMEOUT_SECONDS = 5
DEBUG_HINT = "set QUEUE_SERVICE_LOG_LEVEL=debug to see the traceback"
# What the server said that means the setting is wrong rather than the server down.
_SETTING_IS_WRONG = (
    "does not exist",
    "password authentication failed",
    "no password supplied",
    "pg_hba.conf",
    "invalid integer value",
    "invalid sslmode value",
    "invalid connection option",
    "server does not support ssl",
)


def check_database(
    conninfo: str, *, setting: str = "DATABASE_URL", require_migrated: bool = False
) -> None:
    """Connect once (seconds at most) and, if asked, check the schema is
    migrated; raise StartupError naming ``setting`` otherwise."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        raise _invalid_url(setting, exc) from None
    timeout = {} if "connect_timeout" in params else {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    try:
        with psycopg.connect(conninfo, autocommit=True, **timeout):  # type: ignore[arg-type]
            pass
        pending = pending_migrations(conninfo) if require_migrated else []
    except psycopg.Error as exc:
        raise database_failure(exc, conninfo, setting) or StartupError(
            f"the database {_where(conninfo)} ({setting}) failed the start-up check: {_said(exc)}",
            DEBUG_HINT,
            exit_code=1,
        ) from None
    if pending:
        raise StartupError(
            f"the database {_where(conninfo)} ({setting}) lacks {len(pending)} migration(s),"
            f" from {pending[0]}",
            "run `queue-service migrate`, or set QUEUE_SERVICE_AUTO_MIGRATE=true",
            exit_code=1,
        )


def database_failure(
    exc: BaseException, conninfo: str | None = None, setting: str = "DATABASE_URL"
) -> StartupError | None:
    """What to tell an operator about a database error met by a command; None
    when ``exc`` is not one (a bug, or another layer's error)."""
    where = _where(conninfo) if conninfo else ""
    at = f" {where}" if where else ""
    if isinstance(exc, PoolTimeout):
        return StartupError(
            f"no database connection{at} ({setting}) came free in time: {exc}",
            "check that the server is up and below its max_connections, or lower"
            " QUEUE_SERVICE_POOL_SIZE",
            exit_code=1,
        )
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return StartupError(
            f"the database{at} ({setting}) is not migrated: {_said(exc)}",
            "run `queue-service migrate`, or set QUEUE_SERVICE_AUTO_MIGRATE=true",
            exit_code=1,
        )
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return StartupError(
            f"the database user of {setting}{at} lacks a privilege: {_said(exc)}",
            "connect as the owner of the schema, or grant this user the roles it needs",
        )
    if isinstance(exc, psycopg.ProgrammingError) and "connection info" in str(exc):
        return _invalid_url(setting, exc)
    if not isinstance(exc, psycopg.OperationalError):
        return None
    said = _said(exc)
    if any(text in said.lower() for text in _SETTING_IS_WRONG):
        return StartupError(
            f"cannot connect to PostgreSQL{at} ({setting}): {said}",
            f"check the user, password, database name and options in {setting}",
        )
    return StartupError(
        f"cannot connect to PostgreSQL{at} ({setting}): {said}",
        f"start the server or open the network path to it, or set {setting} to a reachable server",
        exit_code=1,
    )


def _invalid_url(setting: str, exc: Exception) -> StartupError:
    return StartupError(
        f"{setting} is not a PostgreSQL connection URL: {_said(exc)}",
        f"write it as postgresql://USER:PASSWORD@HOST:5432/DATABASE (or {setting}_FILE)",
    )


def _said(exc: BaseException) -> str:
    """The driver's message without its prefixes: the part that says why."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for prefix in ("connection failed: ",):
        text = text.removeprefix(prefix)
    if " failed: " in text:  # 'connection to server at "h", port 5432 failed: FATAL:  ...'
        text = text.split(" failed: ", 1)[1]
    return text.removeprefix("FATAL:").strip()


def _where(conninfo: str) -> str:
    """host:port/database of a conninfo, never its password."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return ""
    host = str(params.get("host") or "localhost")
    if host.startswith("/"):
        host = f"socket {host}"
    port = params.get("port")
    database = params.get("dbname")
    return f"at {host}{f':{port}' if port else ''}{f'/{database}' if database else ''}"
