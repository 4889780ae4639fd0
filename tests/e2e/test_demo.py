"""`queue-service demo` runs the platform's order flow end to end through the
HTTP API and real worker processes: payments, fulfilment, mints, emails,
webhooks, analytics and refunds, with a summary a person can read."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO, TEST_JWT_SECRET, ServiceProcess

PROVIDER_ENV = ("STRIPE_SECRET_KEY", "SMTP_HOST", "MINTING_SERVICE_URL", "SOLANA_RPC_URL")


def demo(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV}
    return subprocess.run(
        [sys.executable, "-m", "queue_service.cli", "demo", *args],
        env={**base, "PYTHONPATH": str(REPO), "COLUMNS": "120", **env},
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        check=False,
    )


def summary(stdout: str) -> dict[str, int]:
    """The summary table's rows: '│ charges │ 5 │' -> {'charges': 5}."""
    rows = re.findall(r"│ ([a-zA-Z ,()-]+?)\s+│\s+(\d+) │", stdout)
    return {what: int(count) for what, count in rows}


def expect_complete_flow(stdout: str, orders: int) -> None:
    counts = summary(stdout)
    declined = sum(1 for i in range(orders) if i % 10 == 3)
    tickets = sum(1 + i % 3 for i in range(orders) if i % 10 != 3)
    refunds = sum(1 for i in range(orders) if i % 4 == 1 and i % 10 != 3)
    assert counts["orders"] == orders
    assert counts["charges"] == orders - declined
    assert counts["declined payments (dead-lettered)"] == declined
    assert counts["orders fulfilled"] == orders - declined
    assert counts["NFT mints"] == tickets
    # payment confirmations + one nft_minted per ticket + refund confirmations
    assert counts["emails"] == (orders - declined) + tickets + refunds
    assert counts["refunds"] == refunds
    assert counts["analytics events"] == orders - declined


@pytest.mark.slow
def test_the_demo_starts_its_own_service_and_shows_the_order_flow_completing() -> None:
    done = demo("--orders", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "started a local service" in done.stdout
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/dashboard/", done.stdout)
    expect_complete_flow(done.stdout, 5)


@pytest.mark.slow
def test_the_demo_drives_a_running_service_signing_with_its_key(
    database_url: str, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    service = ServiceProcess(
        database_url,
        "serve",
        env={
            "QUEUE_SERVICE_PORT": str(port),
            "QUEUE_SERVICE_OUTBOX_DIR": str(tmp_path / "outbox"),
            "QUEUE_SERVICE_AUTO_MIGRATE": "true",
        },
    )
    try:
        done = demo(
            "--url",
            f"http://127.0.0.1:{port}",
            "--orders",
            "4",
            JWT_SECRET=TEST_JWT_SECRET,
            QUEUE_SERVICE_ENV="production",
        )
    finally:
        service.stop()
    assert done.returncode == 0, done.stdout + done.stderr + service.logs()
    assert "started a local service" not in done.stdout
    expect_complete_flow(done.stdout, 4)
