"""Real worker processes for crash tests: start, signal, read their logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEST_JWT_SECRET = "test-secret-for-child-processes-0123456789abcdef"


class ServiceProcess:
    """`queue-service <command>` in a child process, logs to a file."""

    def __init__(self, database_url: str, *args: str, env: dict[str, str] | None = None) -> None:
        fd, path = tempfile.mkstemp(prefix="qs-proc-", suffix=".log")
        os.close(fd)
        self.log_path = Path(path)
        full_env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "QUEUE_SERVICE_PROCESSORS": "tests.support.processors:PROCESSORS",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "QUEUE_SERVICE_POLL_INTERVAL_SECONDS": "0.2",
            "QUEUE_SERVICE_LEADER_INTERVAL_SECONDS": "0.5",
            "QUEUE_SERVICE_SHUTDOWN_GRACE_SECONDS": "5",
            "QUEUE_SERVICE_AUTO_MIGRATE": "false",
            "QUEUE_SERVICE_LOG_LEVEL": "info",
            # serve also runs the HTTP API: any free port, a test key.
            "QUEUE_SERVICE_PORT": "0",
            "JWT_SECRET": TEST_JWT_SECRET,
            # Jobs may run on development providers (production refuses them);
            # a test that configures real ones passes their settings in env.
            "QUEUE_SERVICE_ENV": "development",
            **(env or {}),
        }
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "queue_service.cli", *args],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def logs(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def stop(self) -> None:
        """Kill the process if it still runs (its log stays for the caller)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def run_cli(
    database_url: str, *args: str, processors: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`queue-service ARGS` as a shell would run it, loading ``processors``
    (QUEUE_SERVICE_PROCESSORS) from this repository; ``env`` added last."""
    return subprocess.run(
        [sys.executable, "-m", "queue_service.cli", *args],
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "QUEUE_SERVICE_PROCESSORS": processors,
            "PYTHONPATH": str(REPO),
            "COLUMNS": "200",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
