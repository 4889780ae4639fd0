"""Configured webhook endpoints: the operator's command line, and secrets the
API role cannot read."""

from __future__ import annotations

import re

import psycopg
import pytest

from tests.e2e.test_cli import cli

SECRET_LINE = re.compile(r"secret \(shown once\): (whsec_[A-Za-z0-9+/=]+)")


def test_the_command_line_adds_lists_rotates_and_removes_an_endpoint(database_url: str) -> None:
    added = cli(
        database_url,
        "webhooks",
        "add",
        "orders",
        "https://hooks.example/in?token=t0p",
        "--tenant",
        "acme",
    ).stdout
    match = SECRET_LINE.search(added)
    assert match is not None, added
    secret = match.group(1)

    listed = cli(database_url, "webhooks", "list", "--tenant", "acme").stdout
    assert "orders" in listed and "https://hooks.example/in" in listed
    assert secret not in listed and "t0p" not in listed  # no secret, no query string

    rotated = cli(database_url, "webhooks", "rotate", "orders", "--tenant", "acme").stdout
    new = SECRET_LINE.search(rotated)
    assert new is not None and new.group(1) != secret
    assert "2 (rotating)" in cli(database_url, "webhooks", "list").stdout
    cli(database_url, "webhooks", "rotate", "orders", "--tenant", "acme", "--finish")
    assert "rotating" not in cli(database_url, "webhooks", "list").stdout

    again = cli(
        database_url,
        "webhooks",
        "add",
        "orders",
        "https://x.example/",
        "--tenant",
        "acme",
        check=False,
    )
    assert again.returncode == 1 and "already has an endpoint 'orders'" in again.stderr
    bad = cli(
        database_url,
        "webhooks",
        "add",
        "billing",
        "https://x.example/",
        "--tenant",
        "acme",
        "--secret",
        "whsec_c2hvcnQ=",
        check=False,
    )
    assert bad.returncode == 2 and "at least 24 random bytes" in bad.stderr

    cli(database_url, "webhooks", "remove", "orders", "--tenant", "acme")
    gone = cli(database_url, "webhooks", "enable", "orders", "--tenant", "acme", check=False)
    assert gone.returncode == 1 and "no webhook endpoint 'orders'" in gone.stderr


def test_the_api_role_cannot_read_endpoint_secrets(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO webhook_endpoints (tenant_id, name, url, secrets)"
            " VALUES ('acme', 'orders', 'https://hooks.example/', ARRAY['whsec_x'])"
        )
        conn.execute("SET ROLE queue_service_api")
        conn.execute("SELECT set_config('queue_service.tenant_id', 'acme', false)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT secrets FROM webhook_endpoints")
