"""The container shapes shipped in the repository: compose.yaml is valid and
wires PostgreSQL 17 with a volume and secrets as files; the Dockerfile is
multi-stage, runs `queue-service serve` as a non-root user, and its
HEALTHCHECK command really probes /health/live.

No Docker engine runs on these machines (images cannot be pulled or built):
compose is checked with `docker compose config` (or the older
`docker-compose config`), which needs no engine, and skipped with the reason
where neither is installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.api.conftest import Api
from tests.support.processes import REPO

DOCKERFILE = REPO / "Dockerfile"


def compose_command() -> list[str] | None:
    """`docker compose` if the plugin answers, else `docker-compose`, else None."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        probe = subprocess.run([*command, "version"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return command
    return None


def compose_config(**env: str) -> dict[str, Any]:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed on this machine")
    done = subprocess.run(
        [*command, "--file", str(REPO / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **env},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def test_compose_runs_the_service_on_postgresql_17_with_a_volume_and_file_secrets() -> None:
    config = compose_config()
    services = config["services"]

    db = services["postgres"]
    assert db["image"] == "postgres:17"
    # docker compose prints volumes as mappings, docker-compose v1 as strings.
    mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in db["volumes"]]
    assert any(m.startswith("pgdata:/var/lib/postgresql/data") for m in mounts), mounts
    assert "pgdata" in config["volumes"]
    assert db["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"

    app = services["queue-service"]
    assert app["command"] == ["serve"]
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    env = app["environment"]
    assert env["QUEUE_SERVICE_ENV"] == "production"
    for name, secret in {
        "DATABASE_URL": "database_url",
        "JWT_SECRET": "jwt_secret",
        "INTERNAL_HMAC_SECRET": "internal_hmac_secret",
    }.items():
        assert env[f"{name}_FILE"] == f"/run/secrets/{secret}"
        assert name not in env, f"{name} must come from a file, not the environment"
        assert secret in [_source(s) for s in app["secrets"]]
        assert config["secrets"][secret]["file"].endswith(f"/secrets/{secret}")


def test_compose_can_try_the_stack_in_development_mode() -> None:
    config = compose_config(QUEUE_SERVICE_ENV="development")

    assert config["services"]["queue-service"]["environment"]["QUEUE_SERVICE_ENV"] == (
        "development"
    )


def _source(s: Any) -> str:
    return str(s["source"] if isinstance(s, dict) else s)


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_the_image_is_built_in_stages_and_runs_serve_as_a_non_root_user() -> None:
    steps = _instructions()
    stages = [args for op, args in steps if op == "FROM"]
    assert len(stages) >= 2, "a build stage and a runtime stage"
    runtime_start = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    runtime = steps[runtime_start:]

    users = [args for op, args in runtime if op == "USER"]
    assert users and not users[-1].startswith(("root", "0")), users
    assert ("ENTRYPOINT", '["queue-service"]') in runtime
    assert ("CMD", '["serve"]') in runtime
    assert any(op == "COPY" and "--from=build" in args for op, args in runtime)
    assert not any(op == "RUN" and "pip install" in args for op, args in runtime)


def _healthcheck_command() -> list[str]:
    [args] = [args for op, args in _instructions() if op == "HEALTHCHECK"]
    command: list[str] = json.loads(args.split("CMD", 1)[1].strip())
    return command


async def test_the_image_s_healthcheck_probes_health_live(live_api: Api) -> None:
    command = _healthcheck_command()
    assert command[0] == "python"
    port = live_api.base_url.rsplit(":", 1)[1]

    def probe(at_port: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, *command[1:]],
            env={**os.environ, "QUEUE_SERVICE_PORT": at_port},
            capture_output=True,
            timeout=30,
            check=False,
        )

    # In a thread: the server answers on this test's event loop.
    up = await asyncio.to_thread(probe, port)
    down = await asyncio.to_thread(probe, "1")

    assert up.returncode == 0, up.stderr
    assert down.returncode != 0


def test_secrets_and_local_state_stay_out_of_the_build_context() -> None:
    ignored = set(Path(REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "secrets"} <= ignored
