"""`queue-service rate-limits status|stop|reset` as an operator runs them."""

from __future__ import annotations

import json

import psycopg

from tests.e2e.test_cli import cli


def stopped_by(database_url: str, service: str) -> tuple[object, ...] | None:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT stopped_by, stop_reason FROM outbound_services WHERE service = %s",
            (service,),
        ).fetchone()


def test_an_operator_stops_a_service_sees_it_in_status_and_resets_it(database_url: str) -> None:
    table = cli(database_url, "rate-limits", "status").stdout
    for service in ("stripe", "solana", "internal", "twilio", "smtp", "webhooks"):
        assert service in table

    stop = cli(database_url, "rate-limits", "stop", "stripe", "--reason", "card testing attack")
    assert "stopped stripe" in stop.stdout
    by, reason = stopped_by(database_url, "stripe") or (None, None)
    assert str(by).startswith("cli (") and reason == "card testing attack"
    shown = cli(database_url, "rate-limits", "status", "stripe").stdout
    assert "STOPPED" in shown and "card testing attack" in shown
    (state,) = json.loads(cli(database_url, "rate-limits", "status", "stripe", "--json").stdout)
    assert state["stop_reason"] == "card testing attack" and state["breaker_state"] == "closed"

    assert "reset stripe" in cli(database_url, "rate-limits", "reset", "stripe").stdout
    assert stopped_by(database_url, "stripe") == (None, None)
    assert "STOPPED" not in cli(database_url, "rate-limits", "status").stdout


def test_an_unknown_service_is_an_error_naming_the_known_ones(database_url: str) -> None:
    done = cli(database_url, "rate-limits", "stop", "strpe", check=False)
    assert done.returncode == 1
    assert "no outbound service 'strpe'; services are internal, smtp" in done.stderr
