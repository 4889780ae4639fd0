#!/usr/bin/env python3
"""Developer bootstrap (stdlib only): one command builds .venv from the lock and runs a task.

Usage: python3 dev.py serve [args] | test [pytest args] | check | lock
"""

from __future__ import annotations

import sys

if sys.version_info < (3, 11):  # noqa: UP036 - must run (and say this) on older Pythons
    sys.exit(f"queue-service needs Python 3.11 or newer; this is {sys.version.split()[0]}")

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import venv
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LOCK = ROOT / "requirements.lock"
PYPROJECT = ROOT / "pyproject.toml"
BIN = "Scripts" if os.name == "nt" else "bin"
STAMP = VENV / ".dev-py-installed.json"
# Bump when the install procedure changes, so existing venvs reinstall once.
INSTALL_RECIPE = "1"
_PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9._!-]+$")

USAGE = """usage: python3 dev.py COMMAND [ARGS...]

  serve [args]   install the project (locked deps) into .venv, run `queue-service serve args`
                 (QUEUE_SERVICE_ENV defaults to development: embedded database, generated keys)
  test [args]    install with dev extras (and Debian's pgbouncer and chromium when missing,
                 as root or with sudo), run `python -m pytest args` on
                 QUEUE_SERVICE_TEST_WORKERS workers (default 4; 0: one process)
  check          install with dev extras, run ruff check, ruff format --check, mypy, pytest
  lock           regenerate requirements.lock from pyproject.toml in a fresh venv
"""


def say(message: str) -> None:
    print(f"dev.py: {message}", file=sys.stderr, flush=True)


def venv_exe(name: str, env_dir: Path = VENV) -> Path:
    suffix = ".exe" if os.name == "nt" else ""
    return env_dir / BIN / f"{name}{suffix}"


@contextlib.contextmanager
def venv_lock() -> Iterator[None]:
    """Serialise concurrent dev.py runs (e.g. make -j) while they touch .venv."""
    VENV.mkdir(exist_ok=True)
    try:
        import fcntl  # POSIX only
    except ImportError:  # Windows: no locking
        yield
        return
    with (VENV / ".dev-py.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def create_venv(env_dir: Path) -> None:
    say(f"creating virtual environment {env_dir}")
    try:
        venv.EnvBuilder(with_pip=True).create(env_dir)
    except (subprocess.CalledProcessError, OSError) as exc:
        sys.exit(
            f"dev.py: could not create {env_dir} ({exc}).\n"
            "On Debian/Ubuntu install the venv module first: apt-get install python3-venv"
        )


def venv_python_ok() -> bool:
    cfg = VENV / "pyvenv.cfg"
    if not venv_exe("python").exists() or not cfg.exists():
        return False
    found = re.search(r"^version(?:_info)?\s*=\s*(\d+)\.(\d+)", cfg.read_text(), re.MULTILINE)
    if found and (int(found[1]), int(found[2])) < (3, 11):
        sys.exit(f"dev.py: {VENV} uses Python {found[1]}.{found[2]}; delete it and rerun")
    return True


def wanted_hash() -> str:
    digest = hashlib.sha256(INSTALL_RECIPE.encode())
    for path in (PYPROJECT, LOCK):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_installed(*, dev: bool) -> None:
    """Create .venv and pip-install the project, unless nothing changed since last time."""
    if not LOCK.exists():
        sys.exit("dev.py: requirements.lock is missing; run `python3 dev.py lock`")
    with venv_lock():
        if not venv_python_ok():
            create_venv(VENV)
        wanted = wanted_hash()
        try:
            stamp = json.loads(STAMP.read_text())
        except (OSError, ValueError):
            stamp = {}
        if stamp.get("hash") == wanted and (stamp.get("dev") or not dev):
            return
        dev = dev or bool(stamp.get("dev"))  # once installed, keep the dev tools in step too
        target = ".[dev]" if dev else "."
        say(f"installing {target} with constraints from requirements.lock")
        STAMP.unlink(missing_ok=True)
        pip = [str(venv_exe("python")), "-m", "pip", "--disable-pip-version-check"]
        code = subprocess.call(  # noqa: S603 - fixed command line
            [*pip, "install", "-q", "-c", str(LOCK), "-e", target], cwd=ROOT
        )
        if code != 0:
            sys.exit(f"dev.py: pip install failed (exit {code})")
        STAMP.write_text(json.dumps({"hash": wanted, "dev": dev}) + "\n")


PGBOUNCER_PACKAGE = "pgbouncer"
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
PGBOUNCER_MISSING = (
    "pgbouncer is not installed and cannot be installed here (needs root or sudo): "
    "the PgBouncer tests will be skipped; install it with "
    "`sudo apt-get install -y --no-install-recommends pgbouncer`"
)


def _apt_knows(package: str) -> bool:
    """Whether apt has a candidate version of ``package`` (else the lists need an update)."""
    try:
        out = subprocess.run(  # noqa: S603 - fixed command line
            ["apt-cache", "policy", package],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    except OSError:
        return False
    found = re.search(r"Candidate:\s*(\S+)", out)
    return bool(found and found[1] != "(none)")


@contextlib.contextmanager
def services_not_started(root: list[str]) -> Iterator[None]:
    """Debian's postinst must not start the packaged pgbouncer service: a policy-rc.d
    that refuses every start (exit 101) for the duration, unless one is already there."""
    if POLICY_RC_D.exists():
        yield
        return
    script = "#!/bin/sh\n# dev.py: no service starts while it installs packages\nexit 101\n"
    subprocess.run(  # noqa: S603
        [*root, "sh", "-c", f"printf '%s' '{script}' > {POLICY_RC_D} && chmod 755 {POLICY_RC_D}"],
        check=True,
    )
    try:
        yield
    finally:
        subprocess.call([*root, "rm", "-f", str(POLICY_RC_D)])  # noqa: S603


def _root_prefix() -> list[str] | None:
    """How to run apt-get as root here: directly, with sudo -n, or not at all (None)."""
    if os.geteuid() == 0:
        return []
    if (
        shutil.which("sudo")
        and subprocess.call(
            ["sudo", "-n", "true"],  # noqa: S607
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        == 0
    ):
        return ["sudo", "-n"]
    return None


def _apt_install(root: list[str], package: str, purpose: str) -> bool:
    """apt-get install one Debian package (updating the lists first if apt does not
    know it), with no service started; False (having said why) if it failed."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_knows(package):
        say(f"apt-get update (the {package} package is not in the package lists)")
        subprocess.call([*root, "apt-get", "update", "-q"], env=env)  # noqa: S603
    say(f"installing Debian's {package} for {purpose} (no packaged service is started)")
    with services_not_started(root):
        code = subprocess.call(  # noqa: S603
            [*root, "apt-get", "install", "-y", "-q", "--no-install-recommends", package],
            env=env,
        )
    if code != 0:
        say(f"apt-get install {package} failed (exit {code}): {purpose} will be skipped")
        return False
    return True


def ensure_pgbouncer() -> None:
    """Install Debian's pgbouncer for the PgBouncer tests when it is missing.

    The tests run their own pgbouncer (a generated ini, a free port, a non-root user);
    the packaged service is never started: it is kept from starting during the install
    and stopped and disabled afterwards in case it started anyway.
    """
    if shutil.which("pgbouncer") or Path("/usr/sbin/pgbouncer").exists():
        return
    if not shutil.which("apt-get"):
        say(
            "pgbouncer is not installed and there is no apt-get to install it: "
            "the PgBouncer tests will be skipped"
        )
        return
    root = _root_prefix()
    if root is None:
        say(PGBOUNCER_MISSING)
        return
    if not _apt_install(root, PGBOUNCER_PACKAGE, "the PgBouncer tests"):
        return
    # Belt and braces: the tests never use the packaged service (port 6432).
    for command in (
        ["systemctl", "disable", "--now", "pgbouncer"],
        ["service", "pgbouncer", "stop"],
    ):
        if shutil.which(command[0]):
            subprocess.call(  # noqa: S603
                [*root, *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_MISSING = (
    "chromium is not installed and cannot be installed here (needs apt-get, and root or "
    "sudo): the dashboard's browser tests will be skipped; install it with "
    "`sudo apt-get install -y --no-install-recommends chromium`"
)


def ensure_chromium() -> None:
    """Install Debian's chromium for the dashboard's browser tests when it is missing.

    Playwright drives this browser (executable_path); `playwright install` and its
    downloaded browsers are never used.
    """
    if CHROMIUM.exists():
        return
    root = _root_prefix() if shutil.which("apt-get") else None
    if root is None:
        say(CHROMIUM_MISSING)
        return
    _apt_install(root, "chromium", "the dashboard's browser tests")


def run_replacing_this_process(argv: Sequence[str]) -> None:
    """exec: signals (Ctrl-C, SIGTERM) reach the program itself, and its exit code is ours."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(ROOT)
    if os.name == "nt":
        sys.exit(subprocess.call(list(argv)))  # noqa: S603
    os.execv(argv[0], list(argv))  # noqa: S606


def parallel(args: Sequence[str]) -> list[str]:
    """pytest arguments that run on QUEUE_SERVICE_TEST_WORKERS workers (default 4;
    0 runs in this process), one test file per worker (a file's module fixtures,
    such as a served dashboard or a set of network namespaces, stay on one
    worker), unless the arguments already choose (-n, -p no:xdist)."""
    if any(a.startswith("-n") or a == "no:xdist" or a.startswith("--numprocesses") for a in args):
        return list(args)
    workers = os.environ.get("QUEUE_SERVICE_TEST_WORKERS", "4")
    if workers == "0":
        return ["-p", "no:xdist", *args]
    return ["-n", workers, "--dist", "loadfile", *args]


def check() -> int:
    python = str(venv_exe("python"))
    steps = {
        "ruff check": [python, "-m", "ruff", "check"],
        "ruff format --check": [python, "-m", "ruff", "format", "--check"],
        "mypy": [python, "-m", "mypy"],
        # The layers and who may import a driver or a vendor SDK (pyproject.toml).
        "lint-imports": [str(venv_exe("lint-imports"))],
        "pytest": [python, "-m", "pytest", *parallel([])],
    }
    failed = []
    for name, command in steps.items():
        say(f"==> {name}")
        if subprocess.call(command, cwd=ROOT) != 0:  # noqa: S603 - fixed command line
            failed.append(name)
    if failed:
        say(f"check FAILED: {', '.join(failed)}")
        return 1
    say("check passed: " + ", ".join(steps))
    return 0


def lock() -> int:
    """Resolve runtime + dev dependencies afresh in a throwaway venv and pin them all."""
    scratch = Path(tempfile.mkdtemp(prefix="queue-service-lock-"))
    try:
        env_dir = scratch / "venv"
        create_venv(env_dir)
        pip = [str(venv_exe("python", env_dir)), "-m", "pip", "--disable-pip-version-check"]
        say("resolving .[dev] in a fresh virtual environment")
        subprocess.run([*pip, "install", "-q", "-e", ".[dev]"], cwd=ROOT, check=True)  # noqa: S603
        frozen = subprocess.run(  # noqa: S603
            [*pip, "freeze", "--exclude-editable"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except subprocess.CalledProcessError as exc:
        say(f"lock FAILED: {exc}")
        return 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    pins = sorted(
        (line.strip() for line in frozen.splitlines() if line.strip() and line[0] not in "#-"),
        key=lambda pin: re.sub(r"[-_.]+", "-", pin.split("==")[0]).lower(),
    )
    # A fresh machine only has PyPI: no direct URLs, local paths or local (+label) versions.
    bad = [pin for pin in pins if not _PIN.match(pin)]
    if bad:
        say("lock FAILED: these cannot be installed from PyPI alone: " + ", ".join(bad))
        return 1
    header = (
        "# Generated by `python3 dev.py lock`: every runtime and dev dependency, transitively,\n"
        f"# resolved with Python {sys.version_info[0]}.{sys.version_info[1]} on {sys.platform}.\n"
        "# Used as pip constraints: pip install -c requirements.lock -e .[dev]\n"
    )
    LOCK.write_text(header + "\n".join(pins) + "\n")
    say(f"wrote {LOCK.name} ({len(pins)} pins)")
    return 0


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(USAGE, end="")
        return 0 if argv else 2
    command, args = argv[0], list(argv[1:])
    if command == "serve":
        ensure_installed(dev=False)
        # The local run: embedded PostgreSQL, a generated JWT key, development
        # providers. Production sets QUEUE_SERVICE_ENV=production and its keys.
        os.environ.setdefault("QUEUE_SERVICE_ENV", "development")
        run_replacing_this_process([str(venv_exe("queue-service")), "serve", *args])
    elif command == "test":
        ensure_installed(dev=True)
        ensure_pgbouncer()
        ensure_chromium()
        python = str(venv_exe("python"))
        run_replacing_this_process([python, "-m", "pytest", *parallel(args)])
    elif command == "check" and not args:
        ensure_installed(dev=True)
        ensure_pgbouncer()
        ensure_chromium()
        return check()
    elif command == "lock" and not args:
        return lock()
    else:
        print(USAGE, end="", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
