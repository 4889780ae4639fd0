"""Which provider serves each kind of work is decided from settings alone: the
development stand-ins are named as such in /health/ready and the log, and a
production process that runs jobs refuses to start with one in use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from queue_service.providers.status import production_refusal, provider_statuses
from queue_service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
REAL_PROVIDERS = {
    "STRIPE_SECRET_KEY": "sk_test_" + "x" * 24,
    "SOLANA_RPC_URL": "http://127.0.0.1:1",
    "SOLANA_WALLET_ADDRESS": "So11111111111111111111111111111111111111112",
    "MINTING_SERVICE_URL": "http://127.0.0.1:1",
    "SMTP_HOST": "127.0.0.1",
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "t" * 32,
    "ANALYTICS_SERVICE_URL": "http://127.0.0.1:1",
}


def test_with_no_credentials_every_kind_of_work_runs_on_a_development_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in REAL_PROVIDERS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    statuses = provider_statuses(Settings())
    assert all(p.development for p in statuses)
    assert {p.kind for p in statuses} >= {"payments", "wallet", "minting", "email", "sms"}
    refusal = production_refusal(Settings(queue_service_env="production"))
    assert refusal is not None
    problem, fix = refusal
    assert "payments: payment sandbox" in problem
    assert "STRIPE_SECRET_KEY or STRIPE_SECRET_KEY_FILE (payments)" in fix
    assert production_refusal(Settings(queue_service_env="development")) is None


def test_a_secret_given_as_a_file_selects_the_real_provider_without_being_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    monkeypatch.setenv("STRIPE_SECRET_KEY_FILE", str(tmp_path / "not-created-yet"))
    [payments] = [p for p in provider_statuses(Settings()) if p.kind == "payments"]
    assert (payments.name, payments.development) == ("stripe", False)


def _worker(database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in REAL_PROVIDERS}
    return subprocess.run(
        [sys.executable, "-m", "queue_service.cli", "worker"],
        env={
            **base,
            "DATABASE_URL": database_url,
            "QUEUE_SERVICE_ENV": "production",
            "JWT_SECRET": "j" * 40,
            "PYTHONPATH": str(REPO),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )


def test_production_refuses_to_run_jobs_on_development_providers_naming_them(
    database_url: str,
) -> None:
    done = _worker(database_url, SMTP_HOST="127.0.0.1")
    assert done.returncode == 2
    # Two lines, whatever the number of providers: what would run on a
    # stand-in, then what to configure.
    problem, fix = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert "development providers: payments: payment sandbox" in problem
    assert "configure STRIPE_SECRET_KEY or STRIPE_SECRET_KEY_FILE (payments)" in fix
    assert "email" not in problem + fix
    assert "Traceback" not in done.stderr


def test_production_runs_jobs_once_every_provider_is_configured(database_url: str) -> None:
    done = _worker(database_url, QUEUE_SERVICE_PROCESSORS="nope.missing:X", **REAL_PROVIDERS)
    # Past the provider check: it fails later, on the processor path it was given.
    assert "development providers" not in done.stderr
    assert "nope.missing" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_a_leader_behind_pgbouncer_without_a_direct_listen_url_is_refused(
    database_url: str,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "queue_service.cli", "serve"],
        env={
            **{k: v for k, v in os.environ.items() if k != "DATABASE_LISTEN_URL"},
            "DATABASE_URL": database_url,
            "QUEUE_SERVICE_PGBOUNCER": "true",
            "QUEUE_SERVICE_ENV": "development",
            "PYTHONPATH": str(REPO),
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 2
    assert "QUEUE_SERVICE_PGBOUNCER=true needs DATABASE_LISTEN_URL" in done.stderr
    assert "Traceback" not in done.stderr
