"""A runtime whose email and SMS providers talk to real local servers: an
aiosmtpd SMTP server and a Twilio-shaped HTTP server (tests/support)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import UUID

import pytest

from queue_service.core.jobs import Job, JobStatus
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime, open_runtime
from tests.integration.conftest import make_settings
from tests.support.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio
from tests.support.smtp_server import SmtpServer, smtp_server
from tests.support.waiting import eventually

SENDER = "tickets@example.org"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as server:
        yield server


@pytest.fixture
async def runtime(
    database_url: str,
    smtp: SmtpServer,
    twilio: FakeTwilio,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Runtime]:
    """Overrides the engine's runtime: run_worker then runs these processors."""
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    settings = make_settings(
        database_url,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_tls="none",
        smtp_from=SENDER,
        twilio_account_sid=ACCOUNT_SID,
        twilio_from_number=FROM_NUMBER,
        twilio_api_base=twilio.base_url,
        queue_service_outbox_dir=tmp_path / "outbox",
    )
    async with open_runtime(settings, database_url) as rt:
        yield rt


def email_job(
    to: str = "jane.doe@example.com", key: str | None = None, **context: object
) -> EnqueueRequest:
    context = context or {"order_id": "ord-1", "amount": 4250, "currency": "USD"}
    return EnqueueRequest(
        type="email.send",
        data={"to": to, "template": "payment_confirmation", "context": context},
        tenant_id="t1",
        idempotency_key=key,
    )


def sms_job(to: str = "+14155550123", body: str = "Your tickets are ready") -> EnqueueRequest:
    return EnqueueRequest(type="sms.send", data={"to": to, "body": body}, tenant_id="t1")


async def reaches(runtime: Runtime, job_id: UUID, status: JobStatus, timeout: float = 15) -> Job:
    async def probe() -> Job | None:
        job = await runtime.manager.get(job_id)
        return job if job.status is status else None

    job = await eventually(probe, timeout=timeout, what=f"job {job_id} {status.value}")
    assert job is not None
    return job


async def sent_once_then_rescued(runtime: Runtime, smtp: SmtpServer, job_id: UUID) -> None:
    """The email.send job lost its lease after the server accepted the message:
    rescued, it completes on attempt 2 from the ledger, sending nothing again."""
    job = await reaches(runtime, job_id, JobStatus.COMPLETED)
    [message] = smtp.messages
    assert job.attempts == 2
    assert job.result == {
        "to": "j***@example.com",
        "message_id": message["Message-ID"],
        "already_sent": True,
    }
    events = await runtime.store.job_events(job_id)
    assert [(e.event, e.attempt) for e in events] == [("rescued", 1), ("completed", 2)]
