"""A real PgBouncer (Debian's package) in transaction mode in front of the test server.

The tests start their own instance: a generated ini in a temporary directory, a free
port on 127.0.0.1, ``auth_type = trust``, every database name routed to the test
server (``* = host=... port=...``: the per-test databases are created as the tests
run). PgBouncer refuses to run as root: as root it drops to a system user with ``-u``.
Never the packaged service (port 6432).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

BINARIES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")

INI = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
pool_mode = transaction
auth_type = trust
auth_file = {auth_file}
max_client_conn = 500
default_pool_size = 40
max_db_connections = 0
ignore_startup_parameters = extra_float_digits,options
server_reset_query =
server_check_delay = 0
server_login_retry = 1
logfile = {logfile}
pidfile = {pidfile}
admin_users = {user}
log_connections = 0
log_disconnections = 0
"""


def pgbouncer_binary() -> str | None:
    found = shutil.which("pgbouncer")
    if found:
        return found
    return next((b for b in BINARIES if os.access(b, os.X_OK)), None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run_as(socket_dir: str | None) -> str | None:
    """The user pgbouncer drops to when started as root (None: not root, run as we are).

    Behind a unix socket (the embedded server) it must be the socket directory's owner:
    PostgreSQL's data directory is 0700.
    """
    if os.geteuid() != 0:
        return None
    if socket_dir is not None:
        owner = pwd.getpwuid(os.stat(socket_dir).st_uid).pw_name
        if owner != "root":
            return owner
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("pgbouncer refuses to run as root and there is no postgres/nobody user")


class PgBouncer:
    """One pgbouncer process; ``url(conninfo)`` aims a test conninfo through it."""

    def __init__(self, server_conninfo: str, binary: str) -> None:
        params = conninfo_to_dict(server_conninfo)
        host = str(params.get("host") or "127.0.0.1")
        port = str(params.get("port") or "5432")
        self.user = str(params.get("user") or "postgres")
        socket_dir = host if host.startswith("/") else None
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="qs-pgbouncer-"))
        self.dir.chmod(0o755)
        self.ini = self.dir / "pgbouncer.ini"
        self.log_path = self.dir / "pgbouncer.log"
        auth_file = self.dir / "userlist.txt"
        users = {self.user, "postgres"}
        auth_file.write_text("".join(f'"{u}" ""\n' for u in sorted(users)))
        self.ini.write_text(
            INI.format(
                host=host,
                port=port,
                listen_port=self.port,
                auth_file=auth_file,
                logfile=self.log_path,
                pidfile=self.dir / "pgbouncer.pid",
                user=self.user,
            )
        )
        run_as = _run_as(socket_dir)
        command = [binary, str(self.ini)]
        if run_as is not None:
            account = pwd.getpwnam(run_as)
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            for path in self.dir.iterdir():
                os.chown(path, account.pw_uid, account.pw_gid)
            command = [binary, "-u", run_as, str(self.ini)]
        self.command = command
        # Its stderr repeats the log file; a file, not a pipe nobody drains.
        self._stderr = (self.dir / "stderr.log").open("wb")
        self.proc = subprocess.Popen(command, stdout=self._stderr, stderr=subprocess.STDOUT)
        self._wait_listening()

    def _wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = (self.dir / "stderr.log").read_text("utf-8", errors="replace")
                raise RuntimeError(f"pgbouncer exited ({self.proc.returncode}): {out}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen on {self.port}:\n{self.logs()}")

    def url(self, conninfo: str) -> str:
        """``conninfo`` (same database and user) reached through this PgBouncer."""
        params = conninfo_to_dict(conninfo)
        params.pop("password", None)
        params.update(host="127.0.0.1", port=str(self.port))
        return make_conninfo("", **params)

    def logs(self) -> str:
        try:
            return self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: immediate shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._stderr.close()

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
