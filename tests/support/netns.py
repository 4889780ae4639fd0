"""Hosts on one machine: Linux network namespaces on a bridge (decision 0021).

A ``Network`` is a "switch" namespace holding a bridge; each ``Host`` is a
namespace with one veth cable (``eth0``) plugged into that bridge, and a
``NamespacedPostgres`` is a PostgreSQL of its own (Debian's binaries) that
listens only on its host's address. Nothing is added to the machine's own
network namespace: no interface, no route, no address, so the hosts can reach
each other and nothing else, and two runs (each with its own switch) may use
the same subnet. Names carry the creating process's id, so concurrent runs
never collide and a run can sweep the leftovers of runs that died
(``sweep_stale``).

The test process itself stays in the machine's namespace: it watches the
database through PostgreSQL's Unix socket (a file, not a network address), so
cutting a host's cable never cuts the observer.

Needs root and iproute2 (``missing_requirement`` says what is missing).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from tests.support.processes import REPO

PREFIX = "qsmh"  # every namespace this module makes: qsmh-<pid>-<token>-<host>
SUBNET = "10.213.0"  # inside the run's own switch only: never on the machine's network
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"


def missing_requirement() -> str | None:
    """Why hosts cannot be made here, or None when they can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    if shutil.which("setpriv") is None:
        return "util-linux's `setpriv` is not installed"
    if not (PG_BIN / "postgres").exists():
        return f"no PostgreSQL 15 binaries in {PG_BIN} (apt-get install postgresql-15)"
    return None


def ip(*args: str) -> None:
    """Run `ip ARGS`; its error text is the exception's message."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _namespaces() -> list[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def namespace_pids(namespace: str) -> list[int]:
    """Every process whose network namespace is ``namespace``."""
    done = subprocess.run(
        ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False
    )
    return [int(p) for p in done.stdout.split()]


def _kill_all(namespace: str) -> None:
    for pid in namespace_pids(namespace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> None:
    """Delete the namespaces (and kill the processes) and the database
    directories of runs whose creator died: a run killed with SIGKILL cannot
    clean up after itself."""
    for name in _namespaces():
        if _stale(name):
            _kill_all(name)
            with contextlib.suppress(RuntimeError):
                ip("netns", "delete", name)
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*"):
        if _stale(path.name):
            shutil.rmtree(path, ignore_errors=True)


def _stale(name: str) -> bool:
    """Whether ``name`` belongs to a run (qsmh-<pid>-...) whose process is gone."""
    parts = name.split("-")
    ours = len(parts) >= 3 and parts[0] == PREFIX and parts[1].isdigit()
    return ours and not _alive(int(parts[1]))


class Host:
    """One namespace with ``eth0`` on the switch at ``address``."""

    def __init__(self, network: Network, label: str, address: str) -> None:
        self.network = network
        self.label = label
        self.namespace = f"{network.run}-{label}"
        self.address = address
        self.port = f"p-{label}"[:15]  # the cable's end on the switch
        self.procs: list[HostProcess] = []

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    def start(self, label: str, argv: list[str], env: dict[str, str]) -> HostProcess:
        proc = HostProcess(self, label, argv, env)
        self.procs.append(proc)
        return proc

    def kill_every_process(self) -> list[int]:
        """SIGKILL every process on this host (as a power cut would); their pids."""
        pids = namespace_pids(self.namespace)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def cut(self) -> None:
        """Unplug the cable at the switch: the host keeps running, cut off."""
        ip("-n", self.network.switch, "link", "set", self.port, "down")

    def plug(self) -> None:
        ip("-n", self.network.switch, "link", "set", self.port, "up")


class HostProcess:
    """A process started inside a host's namespace, its output in a log file."""

    def __init__(self, host: Host, label: str, argv: list[str], env: dict[str, str]) -> None:
        self.host = host
        self.label = label
        fd, path = tempfile.mkstemp(prefix=f"{host.label}-", suffix=".log", dir=host.network.logs)
        os.close(fd)
        self.log_path = Path(path)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            host.argv(*argv), env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def logs(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGKILL, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


class Network:
    """A switch (a namespace with a bridge) and the hosts plugged into it.

    Use as a context manager: leaving it kills every process of every host
    and deletes every namespace (their veths go with them), even on failure.
    """

    def __init__(self) -> None:
        sweep_stale()
        self.run = f"{PREFIX}-{os.getpid()}-{secrets.token_hex(3)}"
        self.switch = f"{self.run}-sw"
        # Every process's log, removed with the network (read them before).
        self.logs = Path(tempfile.mkdtemp(prefix=f"{self.run}-logs-"))
        self.hosts: dict[str, Host] = {}
        self._made: list[str] = []
        self._add_namespace(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self._made.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def add_host(self, label: str) -> Host:
        """A new host at the next address (10.213.0.2, .3, ...)."""
        host = Host(self, label, f"{SUBNET}.{len(self.hosts) + 2}")
        self._add_namespace(host.namespace)
        ip(
            "-n", self.switch, "link", "add", host.port, "type", "veth",
            "peer", "name", "eth0", "netns", host.namespace,
        )  # fmt: skip
        ip("-n", self.switch, "link", "set", host.port, "master", "br0")
        ip("-n", self.switch, "link", "set", host.port, "up")
        ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", host.namespace, "link", "set", "eth0", "up")
        self.hosts[label] = host
        return host

    def close(self) -> None:
        for host in self.hosts.values():
            for proc in host.procs:
                proc.stop()
        for name in reversed(self._made):
            _kill_all(name)
            with contextlib.suppress(RuntimeError):
                ip("netns", "delete", name)
        self._made.clear()
        shutil.rmtree(self.logs, ignore_errors=True)

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NamespacedPostgres:
    """A PostgreSQL 15 of its own on ``host``: TCP on the host's address only
    (what the other hosts use), and a Unix socket in a temporary directory
    (what the test process uses, whatever the network does).

    The server drops a client it cannot reach within a few seconds (TCP
    keepalives and ``tcp_user_timeout``), as docs/scale-out.md recommends: a
    host cut off mid-session must not keep its locks, its connections or the
    leader's advisory lock for the kernel's default two hours.
    """

    def __init__(self, host: Host, *, fsync: bool = False) -> None:
        self.host = host
        # Named after the run, so that sweep_stale finds it if the run dies.
        self.root = Path(tempfile.mkdtemp(prefix=f"{host.namespace}-pg-"))
        self.root.chmod(0o755)
        shutil.chown(self.root, PG_USER, PG_USER)
        self.data = self.root / "data"
        subprocess.run(
            [
                str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync",
            ],
            user=PG_USER, check=True, capture_output=True,
        )  # fmt: skip
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {SUBNET}.0/24 trust\n")
        settings = {
            "listen_addresses": host.address,
            "port": "5432",
            "unix_socket_directories": str(self.root),
            "max_connections": "300",
            "fsync": "on" if fsync else "off",
            "tcp_keepalives_idle": "2",
            "tcp_keepalives_interval": "1",
            "tcp_keepalives_count": "3",
            "tcp_user_timeout": "5000",
            "logging_collector": "off",
        }
        options = [arg for k, v in settings.items() for arg in ("-c", f"{k}={v}")]
        self.proc = host.start(
            "postgres",
            [
                "setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups",
                str(PG_BIN / "postgres"), "-D", str(self.data), *options,
            ],
            {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
        )  # fmt: skip
        self._wait_ready()

    @property
    def admin_url(self) -> str:
        """Through the Unix socket: the observer's way in."""
        return f"postgresql://postgres@/postgres?host={self.root}"

    def url(self, dbname: str) -> str:
        """Through the network: how every other host reaches the database."""
        return f"postgresql://postgres@{self.host.address}:5432/{dbname}"

    def local_url(self, dbname: str) -> str:
        return f"postgresql://postgres@/{dbname}?host={self.root}"

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if self.proc.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL in {self.host.namespace} did not start:\n" + self.proc.logs()
                    ) from None
                time.sleep(0.1)

    def close(self) -> None:
        self.proc.stop(signal.SIGINT)  # fast shutdown
        shutil.rmtree(self.root, ignore_errors=True)


def service_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a `queue-service` process on a host (test job types)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": database_url,
        "QUEUE_SERVICE_DATA_DIR": str(data_dir),
        "QUEUE_SERVICE_PROCESSORS": "tests.support.processors:PROCESSORS",
        "QUEUE_SERVICE_POLL_INTERVAL_SECONDS": "0.2",
        "QUEUE_SERVICE_LEADER_INTERVAL_SECONDS": "0.5",
        "QUEUE_SERVICE_SHUTDOWN_GRACE_SECONDS": "2",
        "QUEUE_SERVICE_AUTO_MIGRATE": "false",
        "QUEUE_SERVICE_LOG_LEVEL": "info",
        "QUEUE_SERVICE_ENV": "development",
        **extra,
    }


def queue_service(*args: str) -> list[str]:
    """The argv of `queue-service ARGS` with this interpreter."""
    return [sys.executable, "-m", "queue_service.cli", *args]
