"""Run a document's example as written: its file blocks (a line naming the
file, then the fenced block) and its ``sh`` blocks become one bash script run
in a fresh directory, as a reader in a clone would type them. Lines that start
the service (serve, worker, api) run in the background, logging to a file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import REPO

_BLOCK = re.compile(
    r"^(?:`(?P<path>[\w./-]+)`:\n\n)?```(?P<lang>[\w-]*)\n(?P<body>.*?)^```", re.S | re.M
)
_SERVICE = re.compile(r"^(?P<cmd>\S*queue-service (?:serve|worker|api)\b[^#]*?)\s*(?:#.*)?$")


def section(doc: Path, title: str) -> str:
    """The text of ``## title`` up to the next ``## `` heading."""
    text = doc.read_text("utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def script(markdown: str, *, services: bool = True) -> str:
    """The bash script a reader would run: files written, commands run in
    order; without ``services``, the lines that start the service are left out."""
    lines = ["set -euo pipefail"]
    for n, block in enumerate(_BLOCK.finditer(markdown)):
        path, lang, body = block["path"], block["lang"], block["body"]
        if path is not None:
            lines += [f"mkdir -p \"$(dirname '{path}')\"", f"cat > '{path}' <<'QS_DOC_EOF'"]
            lines += [body.rstrip("\n"), "QS_DOC_EOF"]
        elif lang == "sh":
            for line in body.splitlines():
                service = _SERVICE.match(line)
                if service is None:
                    lines.append(line)
                elif services:
                    log = f"service-{n}.log"
                    lines.append(f"{service['cmd']} > {log} 2>&1 & echo $! >> service.pids")
    return "\n".join(lines) + "\n"


@dataclass
class Clone:
    """A fresh directory standing for a clone: only the repository's .venv."""

    root: Path
    env: dict[str, str]
    outputs: list[subprocess.CompletedProcess[str]] = field(default_factory=list)

    @classmethod
    def make(cls, root: Path, **env: str) -> Clone:
        root.mkdir(parents=True, exist_ok=True)
        (root / ".venv").symlink_to(REPO / ".venv")
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("QUEUE_SERVICE_", "DATABASE_", "JWT_")) and k != "PYTHONPATH"
        }
        return cls(root, {**inherited, **env})

    def run(self, text: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        (self.root / "example.sh").write_text(text, "utf-8")
        done = subprocess.run(
            ["bash", "example.sh"],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.outputs.append(done)
        if done.returncode != 0:
            raise AssertionError(f"exit {done.returncode}\n{text}\n{done.stdout}\n{done.stderr}")
        return done

    def service_logs(self) -> str:
        return "\n".join(p.read_text("utf-8") for p in sorted(self.root.glob("service-*.log")))

    def stop_services(self) -> None:
        pids = self.root / "service.pids"
        if not pids.exists():
            return
        for pid in (int(p) for p in pids.read_text().split()):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for pid in (int(p) for p in pids.read_text().split()):
            _wait_gone(pid)


def _wait_gone(pid: int, timeout: float = 30.0) -> None:
    """Wait out a service the script started (not our child: poll its pid)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
