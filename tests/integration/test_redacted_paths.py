"""No email address, phone number, card number, secret or token from a job's
payload or a provider's answer reaches the logs (ours and the drivers', at
debug), jobs' last_error, the dead letters, the history or the webhook
delivery records: jobs fail through the real providers against local servers
that quote those values back (SMTP 550, Twilio 400, Stripe's decline, a
webhook receiver's 422) and through a handler whose error text holds them."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pytest
import structlog

from queue_service.core.jobs import JobStatus
from queue_service.observability.logging import configure_logging
from queue_service.providers.webhooks import new_secret
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime, open_runtime
from queue_service.testing.stripe import FakeStripe
from tests.integration.conftest import WorkerFactory, make_settings
from tests.support.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio
from tests.support.money import TEST_STRIPE_KEY
from tests.support.processors import LEDGER_DDL, PROCESSORS
from tests.support.sensitive import SAMPLES, sample_leaks, sample_text
from tests.support.smtp_server import SmtpServer, smtp_server
from tests.support.waiting import eventually
from tests.support.webhook_receiver import Answer, Receiver

TENANT = "t-redact"
WEBHOOK_SECRET = new_secret()
# What FakeTwilio's error answers quote.
TWILIO_QUOTED = "+14155550100"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every log line of the test, at debug (drivers say most there)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("debug", stream=stream)
    yield stream
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        # Real servers quote the refused address, sometimes more.
        server.handler.refuse_always(
            f"550 5.1.1 <{SAMPLES['email']}>: no such user ({sample_text()})"
        )
        yield server


@pytest.fixture
def stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe().start()
    yield fake
    fake.stop()


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver([WEBHOOK_SECRET]) as r:
        # A receiver that echoes what it was sent, and then some.
        body = orjson.dumps({"error": {"detail": sample_text(), "echo": dict(SAMPLES)}})
        r.answer(*[Answer(422, body=body)] * 4)
        yield r


@pytest.fixture
async def runtime(
    database_url: str,
    captured: io.StringIO,
    smtp: SmtpServer,
    stripe: FakeStripe,
    twilio: FakeTwilio,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Runtime]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
    monkeypatch.setenv("STRIPE_SECRET_KEY", TEST_STRIPE_KEY)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    settings = make_settings(
        database_url,
        stripe_api_base=stripe.url,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_tls="none",
        smtp_from="tickets@example.org",
        twilio_account_sid=ACCOUNT_SID,
        twilio_from_number=FROM_NUMBER,
        twilio_api_base=twilio.base_url,
        queue_service_webhook_allow_private_cidrs="127.0.0.1/32",
        queue_service_outbox_dir=tmp_path / "outbox",
    )
    async with open_runtime(settings, database_url, extra_processors=PROCESSORS) as rt:
        yield rt


def job(job_type: str, data: dict[str, Any], **fields: Any) -> EnqueueRequest:
    return EnqueueRequest(type=job_type, data=data, tenant_id=TENANT, **fields)


def failing_jobs() -> list[EnqueueRequest]:
    text = sample_text()
    return [
        job("test.fail", {"mode": "permanent", "message": f"vendor said: {text}"}),
        job("test.fail", {"mode": "retryable", "message": text}, max_attempts=2),
        job(
            "email.send",
            {
                "to": SAMPLES["email"],
                "template": "payment_confirmation",
                "context": {"order_id": "ord-1", "amount": 4250, "currency": "USD"},
            },
        ),
        job("sms.send", {"to": SAMPLES["e164"], "body": f"call {SAMPLES['national']}"}),
        job(
            "payment.process",
            {
                "order_id": "ord-declined",
                "user_id": "u-1",
                "amount": 4250,
                "currency": "USD",
                "payment_method_id": "pm_card_chargeDeclined",
                "customer_email": SAMPLES["email"],
            },
        ),
        job(
            "webhook.process",
            {"event": "order.paid", "payload": dict(SAMPLES), "endpoint": "orders"},
        ),
    ]


def texts(database_url: str) -> dict[str, list[str]]:
    """Every stored error text, by where it is kept."""
    queries = {
        "jobs.last_error": "SELECT last_error FROM jobs",
        "finished_jobs.last_error": "SELECT last_error FROM finished_jobs",
        "dead_letter_jobs.error": "SELECT error FROM dead_letter_jobs",
        "job_events.error": "SELECT error FROM job_events",
        "webhook_deliveries": (
            "SELECT concat_ws(' | ', target, response_excerpt, error) FROM webhook_deliveries"
        ),
    }
    with psycopg.connect(database_url) as conn:
        return {
            where: [row[0] for row in conn.execute(query).fetchall() if row[0]]
            for where, query in queries.items()
        }


async def test_no_sensitive_value_reaches_logs_errors_dead_letters_or_deliveries(
    runtime: Runtime,
    run_worker: WorkerFactory,
    captured: io.StringIO,
    twilio: FakeTwilio,
    receiver: Receiver,
    database_url: str,
) -> None:
    assert await runtime.store.add_webhook_endpoint(TENANT, "orders", receiver.url, WEBHOOK_SECRET)
    twilio.answer_next(400, code=21211)
    ids: list[UUID] = [(await runtime.manager.enqueue(r)).job_id for r in failing_jobs()]
    # One job stays live with its error: retried, its next attempt an hour off.
    retrying = job("test.fail", {"mode": "retryable", "message": sample_text(), "retry_in": 3600})
    live_id = (await runtime.manager.enqueue(retrying)).job_id
    run_worker(queues=("test", "communication", "money"))

    async def all_failed() -> bool:
        jobs = [await runtime.manager.get(i) for i in [*ids, live_id]]
        return all(j.status is JobStatus.FAILED for j in jobs[:-1]) and jobs[-1].attempts == 1

    await eventually(all_failed, timeout=30, what="every job dead-lettered")
    stored = texts(database_url)
    assert len(stored["dead_letter_jobs.error"]) == len(ids)
    assert len(stored["jobs.last_error"]) == 1
    assert stored["webhook_deliveries"], "the receiver's answer was recorded"
    leaks = {where: sample_leaks(rows) for where, rows in stored.items()}
    assert leaks == {where: [] for where in stored}, stored
    lines = captured.getvalue().splitlines()
    assert lines, "nothing was logged"
    loggers = {orjson.loads(line).get("logger") for line in lines}
    assert sample_leaks(lines) == [], [line for line in lines if sample_leaks(line)]
    assert TWILIO_QUOTED not in captured.getvalue()
    assert {"stripe", "httpx"} <= loggers, loggers
