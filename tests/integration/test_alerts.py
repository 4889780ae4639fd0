"""Alerts (SPEC §8) from database truth: each rule fires above its threshold
and not at it; a firing notifies through a Twilio-shaped server and a real
SMTP server, once per cooldown across restarts and leader changes, until
acknowledged; resolution is recorded; no PII reaches a message."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from structlog.testing import capture_logs

from queue_service.observability.metrics import ALERTS_SENT
from queue_service.runtime.duties.alerts import AlertDuty
from queue_service.runtime.leader import Leader
from queue_service.runtime.service import Runtime, open_runtime
from queue_service.settings import Settings
from queue_service.store.session import LeaderSession
from tests.integration.conftest import make_settings
from tests.support.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio
from tests.support.smtp_server import SmtpServer, smtp_server

PHONES = ("+14155550100", "+14155550199")
ONCALL = "oncall.person@example.com"
# PII that test jobs carry: none of it may reach an alert.
CUSTOMER_EMAIL = "jane.customer@example.com"
CUSTOMER_PHONE = "+447700900123"
CARD = "4242 4242 4242 4242"
PII = (*PHONES, ONCALL, CUSTOMER_EMAIL, CUSTOMER_PHONE, CARD, CARD.replace(" ", ""))
DATA = json.dumps({"email": CUSTOMER_EMAIL, "phone": CUSTOMER_PHONE, "card": CARD})

Sql = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def alert_settings(
    database_url: str,
    twilio: FakeTwilio,
    smtp: SmtpServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    return make_settings(
        database_url,
        twilio_account_sid=ACCOUNT_SID,
        twilio_from_number=FROM_NUMBER,
        twilio_api_base=twilio.base_url,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_tls="none",
        smtp_from="alerts@example.org",
        alert_phone_numbers=",".join(PHONES),
        alert_emails=ONCALL,
        queue_service_outbox_dir=tmp_path / "outbox",
        queue_service_alert_rules=json.dumps(
            {"money_queue_depth": {"channels": ["log", "sms", "call", "email"]}}
        ),
    )


@pytest.fixture
async def runtime(alert_settings: Settings, database_url: str) -> AsyncIterator[Runtime]:
    async with open_runtime(alert_settings, database_url) as rt:
        yield rt


@pytest.fixture
def sql(database_url: str) -> Iterator[Sql]:
    with psycopg.connect(database_url, autocommit=True) as conn:

        def run(query: str, *params: Any) -> list[tuple[Any, ...]]:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description is not None else []

        yield run


def duty(runtime: Runtime) -> AlertDuty:
    """A fresh evaluator: it remembers nothing a previous one did."""
    return AlertDuty(runtime.store, runtime.settings, runtime.deps.providers)


def waiting(sql: Sql, queue: str, n: int, *, age_seconds: float = 1, job_type: str = "x") -> None:
    """``n`` jobs ready to run in ``queue`` (run_at ``age_seconds`` ago), carrying PII."""
    sql(
        "INSERT INTO jobs (id, tenant_id, queue, type, data, max_attempts, max_stalled,"
        " lease_seconds, run_at) SELECT gen_random_uuid(), 't1', %s, %s, %s::jsonb, 3, 1, 30,"
        " now() - make_interval(secs => %s) FROM generate_series(1, %s)",
        queue,
        job_type,
        DATA,
        age_seconds,
        n,
    )


def failures(sql: Sql, queue: str, n: int, *, minutes_ago: float = 1) -> None:
    """``n`` jobs of ``queue`` that failed for good (finished, with a failed event)."""
    sql(
        "WITH f AS (INSERT INTO finished_jobs (id, tenant_id, queue, type, status, priority,"
        " data, attempts, max_attempts, stalled_count, max_stalled, lease_seconds, created_at,"
        " run_at, finished_at, last_error) SELECT gen_random_uuid(), 't1', %s,"
        " 'payment.process', 'failed', 5, %s::jsonb, 1, 1, 0, 1, 30, now(), now(), now(),"
        " %s FROM generate_series(1, %s) RETURNING id)"
        " INSERT INTO job_events (job_id, tenant_id, event, attempt, at, error)"
        " SELECT id, 't1', 'failed', 1, now() - make_interval(secs => %s), %s FROM f",
        queue,
        DATA,
        f"card {CARD} declined for {CUSTOMER_EMAIL}",
        n,
        minutes_ago * 60,
        f"card {CARD} declined",
    )


def wallet(sql: Sql, balance: float) -> None:
    sql(
        "INSERT INTO wallet_balances (address, balance_sol, minimum_sol, low_since)"
        " VALUES ('9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin', %s, 0.01, now())"
        " ON CONFLICT (address) DO UPDATE SET balance_sol = EXCLUDED.balance_sol",
        balance,
    )


def firings(sql: Sql, rule: str | None = None) -> list[dict[str, Any]]:
    cur_rows = sql(
        "SELECT to_jsonb(a) FROM alert_history a WHERE %s::text IS NULL OR rule = %s"
        " ORDER BY fired_at",
        rule,
        rule,
    )
    return [row[0] for row in cur_rows]


# (rule, set up rows exactly AT the threshold, add what crosses it, value seen)
RULES: list[tuple[str, Callable[[Sql], None], Callable[[Sql], None], float]] = [
    ("money_queue_depth", lambda s: waiting(s, "money", 50), lambda s: waiting(s, "money", 1), 51),
    (
        "money_oldest_waiting",
        lambda s: waiting(s, "money", 1, age_seconds=598),
        lambda s: waiting(s, "money", 1, age_seconds=660),
        660,
    ),
    ("money_failures", lambda s: failures(s, "money", 10), lambda s: failures(s, "money", 1), 11),
    (
        "communication_queue_depth",
        lambda s: waiting(s, "communication", 5000),
        lambda s: waiting(s, "communication", 1),
        5001,
    ),
    (
        "background_queue_depth",
        lambda s: waiting(s, "background", 50_000),
        lambda s: waiting(s, "background", 1),
        50_001,
    ),
    ("solana_wallet_low", lambda s: wallet(s, 0.01), lambda s: wallet(s, 0.0099), 0.0099),
]


@pytest.mark.parametrize(("rule", "at", "cross", "seen"), RULES, ids=[r[0] for r in RULES])
async def test_each_rule_fires_above_its_threshold_and_not_at_it(
    runtime: Runtime,
    sql: Sql,
    rule: str,
    at: Callable[[Sql], None],
    cross: Callable[[Sql], None],
    seen: float,
) -> None:
    at(sql)
    await duty(runtime).run()
    assert firings(sql) == []

    cross(sql)
    await duty(runtime).run()

    [firing] = firings(sql)
    assert firing["rule"] == rule
    assert firing["value"] == pytest.approx(seen, abs=2)
    assert firing["resolved_at"] is None
    assert firing["notifications"] == 1


async def test_delayed_jobs_and_other_queues_and_old_failures_do_not_count(
    runtime: Runtime, sql: Sql
) -> None:
    waiting(sql, "money", 60, age_seconds=-3600)  # delayed: run_at an hour ahead
    waiting(sql, "communication", 60)
    failures(sql, "communication", 20)
    failures(sql, "money", 20, minutes_ago=16)  # outside the 15 min window

    values = await duty(runtime).measure()

    assert values["money_queue_depth"][0] == 0
    assert values["money_oldest_waiting"][0] is None
    assert values["money_failures"][0] == 0
    assert values["communication_queue_depth"][0] == 60


async def test_a_critical_firing_texts_calls_and_mails_every_recipient_with_its_message(
    runtime: Runtime, sql: Sql, twilio: FakeTwilio, smtp: SmtpServer
) -> None:
    waiting(sql, "money", 51)
    before = ALERTS_SENT.labels(alert="money_queue_depth", severity="critical", channel="sms")
    sent_before = before._value.get()

    with capture_logs() as logs:
        await duty(runtime).run()

    headline = "[CRITICAL] money queue depth: 51 jobs ready to run (alert above 50)"
    assert [m.form for m in twilio.of("Messages")] == [
        {"To": to, "From": FROM_NUMBER, "Body": f"{headline} (queue-service)"} for to in PHONES
    ]
    calls = twilio.of("Calls")
    assert [c.form["To"] for c in calls] == list(PHONES)
    assert all(headline in c.form["Twiml"] and "<Say" in c.form["Twiml"] for c in calls)
    [mail] = smtp.messages
    assert mail["To"] == ONCALL
    assert mail["Subject"] == "[CRITICAL] money queue depth"
    assert "51 jobs ready to run" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    [firing] = firings(sql)
    assert {c["channel"]: (c["sent"], c["failed"]) for c in firing["channels"]} == {
        "log": (1, 0),
        "sms": (2, 0),
        "call": (2, 0),
        "email": (1, 0),
    }
    assert before._value.get() == sent_before + 2
    assert any(e["event"] == "ALERT" and e["log_level"] == "error" for e in logs)


async def test_a_failing_channel_is_recorded_and_the_others_still_go_out(
    runtime: Runtime, sql: Sql, twilio: FakeTwilio, smtp: SmtpServer
) -> None:
    waiting(sql, "money", 51)
    twilio.answer_next(500, code=20500, resource="Messages")  # the first SMS

    await duty(runtime).run()

    [firing] = firings(sql)
    outcome = {c["channel"]: c for c in firing["channels"]}
    assert (outcome["sms"]["sent"], outcome["sms"]["failed"]) == (1, 1)
    assert "Twilio 500" in outcome["sms"]["error"]
    assert outcome["call"]["sent"] == 2
    assert outcome["email"]["sent"] == 1
    assert len(smtp.messages) == 1


async def test_cooldown_suppresses_repeats_across_a_restart_and_a_leader_change(
    runtime: Runtime,
    sql: Sql,
    twilio: FakeTwilio,
    alert_settings: Settings,
    database_url: str,
) -> None:
    waiting(sql, "money", 51)
    first = Leader(LeaderSession(database_url), [duty(runtime)])
    await first.tick()
    assert len(twilio.of("Messages")) == 2

    await duty(runtime).run()  # a restarted evaluator remembers nothing itself
    # A leader change: the first steps down, another process's leader is elected
    # and runs every duty at once.
    await first.session.release()
    async with open_runtime(alert_settings, database_url) as other:
        second = Leader(LeaderSession(database_url), [duty(other)])
        await second.tick()
        assert second.is_leader
        assert len(twilio.of("Messages")) == 2
        [firing] = firings(sql)
        assert firing["notifications"] == 1

        # Five minutes later (critical's cooldown), still firing: it repeats once.
        sql("UPDATE alert_history SET last_notified_at = now() - interval '301 seconds'")
        await duty(other).run()
        await duty(other).run()
        await second.session.release()

    assert len(twilio.of("Messages")) == 4
    [firing] = firings(sql)
    assert firing["notifications"] == 2


async def test_acknowledgement_stops_repeats_of_that_firing(
    runtime: Runtime, sql: Sql, twilio: FakeTwilio
) -> None:
    waiting(sql, "money", 51)
    await duty(runtime).run()
    [firing] = firings(sql)

    acked = await runtime.store.acknowledge_alert(firing["id"], "ops-1")
    again = await runtime.store.acknowledge_alert(firing["id"], "ops-2")
    sql("UPDATE alert_history SET last_notified_at = now() - interval '1 hour'")
    await duty(runtime).run()

    assert acked is not None and again is not None
    assert again.acknowledged_by == "ops-1" and again.acknowledged_at == acked.acknowledged_at
    assert again.status == "acknowledged"
    assert len(twilio.of("Messages")) == 2
    [firing] = firings(sql)
    assert firing["notifications"] == 1 and firing["resolved_at"] is None


async def test_resolution_is_recorded_when_the_condition_clears_and_a_new_firing_follows(
    runtime: Runtime, sql: Sql, twilio: FakeTwilio
) -> None:
    waiting(sql, "money", 51)
    await duty(runtime).run()

    sql("DELETE FROM jobs WHERE queue = 'money'")
    await duty(runtime).run()
    [resolved] = firings(sql)
    assert resolved["resolved_at"] is not None

    # Back within the cooldown: a new firing is recorded but pages nobody yet
    # (a flapping condition pages once per cooldown)...
    waiting(sql, "money", 60)
    await duty(runtime).run()
    assert [f["resolved_at"] is None for f in firings(sql)] == [False, True]
    assert firings(sql)[1]["notifications"] == 0
    assert len(twilio.of("Messages")) == 2
    # ...and once the cooldown has passed, it does.
    sql("UPDATE alert_history SET last_notified_at = now() - interval '301 seconds'")
    await duty(runtime).run()
    assert firings(sql)[1]["notifications"] == 1
    assert len(twilio.of("Messages")) == 4


async def test_no_email_phone_or_card_from_test_data_or_recipients_appears_in_alerts(
    runtime: Runtime, sql: Sql, twilio: FakeTwilio, smtp: SmtpServer
) -> None:
    waiting(sql, "money", 51, job_type="payment.process")
    failures(sql, "money", 11)
    wallet(sql, 0.001)

    with capture_logs() as logs:
        await duty(runtime).run()

    texts = [json.dumps(f) for f in firings(sql)]
    texts += [r.form.get("Body", "") + r.form.get("Twiml", "") for r in twilio.requests]
    texts += [m.get_body(("plain",)).get_content() for m in smtp.messages]  # type: ignore[union-attr]
    texts += [json.dumps(e, default=str) for e in logs]
    assert len(firings(sql)) == 3
    for text in texts:
        for secret in PII:
            assert secret not in text
    assert "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin" not in "".join(texts)


async def test_purge_deletes_resolved_firings_past_retention_and_keeps_open_ones(
    runtime: Runtime, sql: Sql
) -> None:
    waiting(sql, "money", 51)
    await duty(runtime).run()
    sql("DELETE FROM jobs")
    await duty(runtime).run()
    waiting(sql, "money", 51)
    await duty(runtime).run()
    sql("UPDATE alert_history SET fired_at = now() - interval '9 days'")
    sql(
        "UPDATE alert_history SET resolved_at = now() - interval '8 days' WHERE rule IS NOT NULL"
        " AND resolved_at IS NOT NULL"
    )

    assert await runtime.store.purge_alerts(7) == 1

    [left] = firings(sql)
    assert left["resolved_at"] is None
