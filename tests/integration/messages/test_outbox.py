"""The development stand-ins: with no SMTP_HOST / Twilio credentials, email
lands in the outbox as a readable .eml file and SMS / calls as .txt / .json
files, and each provider says in its log that it is a development one."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from queue_service.core.jobs import JobStatus
from queue_service.providers import Providers
from queue_service.providers import email as email_provider
from queue_service.providers.outbox import OutboxEmailProvider, OutboxSmsProvider
from queue_service.providers.status import kind_status
from queue_service.runtime.service import Runtime
from queue_service.settings import Settings
from tests.integration.conftest import WorkerFactory
from tests.integration.messages.conftest import email_job, reaches, sms_job
from tests.support.smtp_server import SmtpServer


def development(outbox: Path) -> Settings:
    return Settings(queue_service_outbox_dir=outbox, smtp_from="tickets@example.org")


def test_status_names_the_development_providers_without_building_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    settings = development(tmp_path / "outbox")
    assert kind_status(settings, "email").describe() == "development: email outbox"
    assert kind_status(settings, "sms").describe() == "development: sms outbox"
    assert not (tmp_path / "outbox").exists()  # nothing was built

    configured = Settings(smtp_host="mail.example.org", twilio_account_sid="AC1")
    assert kind_status(configured, "email").describe() == "smtp"
    # A SID without a token is not Twilio.
    assert kind_status(configured, "sms").describe() == "development: sms outbox"
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "token")
    assert kind_status(configured, "sms").describe() == "twilio"


async def test_the_email_outbox_writes_a_readable_eml_file_and_says_it_is_development(
    tmp_path: Path,
) -> None:
    with capture_logs() as logs:
        provider = Providers(development(tmp_path / "outbox")).email
    assert isinstance(provider, OutboxEmailProvider) and provider.is_development
    [built] = [e for e in logs if "development email provider" in e["event"]]
    assert built["directory"] == str(tmp_path / "outbox" / "email")

    message = email_provider.compose(
        "payment_confirmation",
        {"order_id": "ord-9", "amount": 1999, "currency": "EUR"},
        to="jane.doe@example.com",
        key="t1/email:key:k",
        sender=provider.sender,
    )
    receipt = await provider.send(message)

    [path] = (tmp_path / "outbox" / "email").glob("*.eml")
    assert receipt.detail == str(path)
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "Payment confirmed: order ord-9"
    assert parsed["To"] == "jane.doe@example.com"
    assert parsed["Message-ID"] == message.message_id
    text = path.read_text()
    assert "19.99 EUR" in text  # readable as it stands, not base64


async def test_the_sms_outbox_writes_readable_sms_and_call_files(tmp_path: Path) -> None:
    with capture_logs() as logs:
        provider = Providers(development(tmp_path / "outbox")).sms
    assert isinstance(provider, OutboxSmsProvider) and provider.is_development
    assert any("development SMS provider" in e["event"] for e in logs)

    await provider.send_sms("+14155550123", "Doors open at 7 pm")
    await provider.call("+14155550123", "Money queue depth is 51")

    [sms] = (tmp_path / "outbox" / "sms").glob("*.txt")
    assert "To: +14155550123\n" in sms.read_text() and sms.read_text().endswith(
        "\n\nDoors open at 7 pm\n"
    )
    [call] = (tmp_path / "outbox" / "calls").glob("*.json")
    record = json.loads(call.read_text())
    assert record["to"] == "+14155550123" and record["say"] == "Money queue depth is 51"
    assert "<Say" in record["twiml"]


async def test_email_and_sms_jobs_land_in_the_outbox_without_credentials(
    runtime: Runtime, run_worker: WorkerFactory, smtp: SmtpServer, tmp_path: Path
) -> None:
    outbox = tmp_path / "dev-outbox"
    settings = development(outbox)
    deps = dataclasses.replace(runtime.deps, settings=settings, providers=Providers(settings))
    mail = await runtime.manager.enqueue(email_job())
    text = await runtime.manager.enqueue(sms_job())
    run_worker(queues=("communication",), deps=deps)
    await reaches(runtime, mail.job_id, JobStatus.COMPLETED)
    await reaches(runtime, text.job_id, JobStatus.COMPLETED)

    assert len(list((outbox / "email").glob("*.eml"))) == 1
    assert len(list((outbox / "sms").glob("*.txt"))) == 1
    assert smtp.messages == []
    await deps.providers.aclose()
