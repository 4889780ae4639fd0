"""email.send through a real SMTP server (aiosmtpd): delivered once with a
Message-ID derived from its key, 4xx retried, 5xx dead-lettered at once, and
a job retried after its send completes without sending again."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import aiosmtplib
import psycopg
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from queue_service.core.jobs import JobStatus
from queue_service.errors import InvalidPayloadError, PermanentError, RetryableError
from queue_service.providers.email import compose, message_id_for
from queue_service.providers.smtp import SmtpEmailProvider, smtp_error
from queue_service.runtime.service import Runtime
from tests.integration.conftest import WorkerFactory
from tests.integration.messages.conftest import (
    SENDER,
    email_job,
    reaches,
    sent_once_then_rescued,
)
from tests.support.smtp_server import SmtpServer, free_port, smtp_server
from tests.support.waiting import eventually


def parts(message: EmailMessage) -> dict[str, str]:
    return {p.get_content_type(): p.get_content() for p in message.walk() if not p.is_multipart()}


async def test_an_email_is_delivered_once_with_its_subject_both_parts_and_a_message_id_from_its_key(
    runtime: Runtime, run_worker: WorkerFactory, smtp: SmtpServer
) -> None:
    done = await runtime.manager.enqueue(email_job(key="order-1-confirmation"))
    run_worker(queues=("communication",))
    job = await reaches(runtime, done.job_id, JobStatus.COMPLETED)

    [message] = smtp.messages
    expected_id = message_id_for("t1/email:key:order-1-confirmation", SENDER)
    assert message["Message-ID"] == expected_id
    assert message["Subject"] == "Payment confirmed: order ord-1"
    assert message["To"] == "jane.doe@example.com" and message["From"] == SENDER
    assert message.get_content_type() == "multipart/alternative"
    body = parts(message)
    assert "42.50 USD" in body["text/plain"] and "<strong>42.50 USD</strong>" in body["text/html"]
    assert job.result == {
        "to": "j***@example.com",
        "message_id": expected_id,
        "already_sent": False,
    }
    assert job.attempts == 1


async def test_a_job_without_an_idempotency_key_takes_its_message_id_from_its_job_id(
    runtime: Runtime, run_worker: WorkerFactory, smtp: SmtpServer
) -> None:
    done = await runtime.manager.enqueue(email_job())
    run_worker(queues=("communication",))
    await reaches(runtime, done.job_id, JobStatus.COMPLETED)
    [message] = smtp.messages
    assert message["Message-ID"] == message_id_for(f"t1/email:job:{done.job_id}", SENDER)


async def test_a_451_is_retried_and_the_message_delivered_once(
    runtime: Runtime, run_worker: WorkerFactory, smtp: SmtpServer
) -> None:
    smtp.handler.refuse_next("451 4.3.0 Try again later")
    done = await runtime.manager.enqueue(email_job())
    run_worker(queues=("communication",))
    job = await reaches(runtime, done.job_id, JobStatus.COMPLETED)

    assert len(smtp.messages) == 1 and smtp.handler.refused == ["451 4.3.0 Try again later"]
    assert job.attempts == 2
    events = await runtime.store.job_events(done.job_id)
    assert [(e.event, e.attempt) for e in events] == [("retry_scheduled", 1), ("completed", 2)]
    assert "SMTP 451" in (events[0].error or "")


async def test_a_550_fails_the_job_into_the_dead_letter_queue_without_retrying(
    runtime: Runtime, run_worker: WorkerFactory, smtp: SmtpServer
) -> None:
    smtp.handler.refuse_always("550 5.1.1 <jane.doe@example.com>: mailbox unavailable")
    done = await runtime.manager.enqueue(email_job())
    run_worker(queues=("communication",))
    job = await reaches(runtime, done.job_id, JobStatus.FAILED)

    assert job.attempts == 1 and smtp.messages == []
    assert "permanent (recipient_rejected)" in (job.last_error or "")
    # The server's reply quoted the address; the stored error must not.
    assert "jane.doe@example.com" not in (job.last_error or "")
    [dead] = await runtime.store.list_dead_letters("t1", 10)
    assert dead.original_job_id == done.job_id and dead.attempts == 1


async def test_a_job_retried_after_its_send_completes_without_sending_again(
    runtime: Runtime, run_worker: WorkerFactory, smtp: SmtpServer, database_url: str
) -> None:
    """The attempt's completion is refused after the server accepted (its lease
    moved on, as after a stall): the rescued attempt finds the ledger row."""
    done = await runtime.manager.enqueue(email_job(key="once"))

    def lose_the_lease(_: EmailMessage) -> None:
        # On the server's thread, before its 250: the sender's completion will fail.
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE jobs SET lease_token = lease_token + 1000000,"
                " lease_expires_at = now() - interval '1 second' WHERE id = %(id)s",
                {"id": done.job_id},
            )

    smtp.handler.after_accept = lose_the_lease
    run_worker(queues=("communication",))

    async def recorded() -> bool:
        entry = await runtime.store.message_ledger("t1", done.job_id, "email")
        return entry is not None and entry.sent is not None

    await eventually(recorded, what="the ledger row of the accepted message")
    smtp.handler.after_accept = None
    await eventually(runtime.store.rescue_expired, what="the stalled job rescued")
    await sent_once_then_rescued(runtime, smtp, done.job_id)


async def test_an_email_job_whose_context_lacks_a_template_key_is_refused_at_enqueue(
    runtime: Runtime,
) -> None:
    with pytest.raises(InvalidPayloadError, match="needs context keys: amount"):
        await runtime.manager.enqueue(email_job(order_id="ord-1", currency="USD"))


async def test_a_context_the_template_cannot_render_fails_permanently_without_sending(
    runtime: Runtime, run_worker: WorkerFactory, smtp: SmtpServer
) -> None:
    done = await runtime.manager.enqueue(email_job(order_id="o", amount="12.50", currency="USD"))
    run_worker(queues=("communication",))
    job = await reaches(runtime, done.job_id, JobStatus.FAILED)
    assert job.attempts == 1 and smtp.messages == []
    assert "permanent (validation)" in (job.last_error or "")
    assert "amount must be an integer in minor units" in (job.last_error or "")


async def test_an_unreachable_smtp_server_is_a_retryable_error() -> None:
    # A port picked free and left closed: the connection is refused.
    provider = SmtpEmailProvider(host="127.0.0.1", port=free_port(), sender=SENDER, tls="none")
    alert = {"alert": "a", "severity": "info", "message": "m"}
    email = compose("admin_alert", alert, to="ops@example.com", key="k", sender=SENDER)
    with pytest.raises(RetryableError, match="SMTP"):
        await provider.send(email)


# Plain-text AUTH is what a loopback test server can offer; aiosmtpd warns.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_smtp_auth_is_used_when_a_username_is_set_and_a_refusal_is_permanent() -> None:
    alert = {"alert": "a", "severity": "info", "message": "m"}
    email = compose("admin_alert", alert, to="ops@example.com", key="k", sender=SENDER)
    with smtp_server(auth=("mailer", "right-password")) as server:
        good = SmtpEmailProvider(
            host=server.host,
            port=server.port,
            sender=SENDER,
            tls="none",
            username="mailer",
            password=SecretStr("right-password"),
        )
        await good.send(email)
        bad = SmtpEmailProvider(
            host=server.host,
            port=server.port,
            sender=SENDER,
            tls="none",
            username="mailer",
            password=SecretStr("wrong-password"),
        )
        with pytest.raises(PermanentError, match="SMTP 535") as refused:
            await bad.send(email)
        assert refused.value.reason == "authentication"
        assert len(server.messages) == 1


async def test_email_logs_mask_the_recipient(
    runtime: Runtime, run_worker: WorkerFactory, smtp: SmtpServer
) -> None:
    with capture_logs() as logs:
        done = await runtime.manager.enqueue(email_job(to="jane.doe@example.com"))
        run_worker(queues=("communication",))
        await reaches(runtime, done.job_id, JobStatus.COMPLETED)
        await asyncio.sleep(0)  # let the completion's own log lines land
    sent = [e for e in logs if e["event"] == "email sent"]
    assert sent and sent[0]["to"] == "j***@example.com"
    assert "jane.doe@example.com" not in repr(logs)


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        (
            aiosmtplib.SMTPAuthenticationError(535, "bad credentials"),
            PermanentError,
            "authentication",
        ),
        (
            aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "no", "x@y.z")]),
            PermanentError,
            "recipient_rejected",
        ),
        (
            aiosmtplib.SMTPRecipientRefused(553, "bad name", "x@y.z"),
            PermanentError,
            "recipient_rejected",
        ),
        (aiosmtplib.SMTPDataError(554, "transaction failed"), PermanentError, "rejected"),
        (aiosmtplib.SMTPSenderRefused(451, "local error", "a@b.c"), RetryableError, None),
        (aiosmtplib.SMTPAuthenticationError(454, "temporary failure"), RetryableError, None),
        (aiosmtplib.SMTPServerDisconnected("gone"), RetryableError, None),
        (aiosmtplib.SMTPReadTimeoutError("timed out"), RetryableError, None),
        (ConnectionRefusedError(111, "refused"), RetryableError, None),
    ],
)
def test_smtp_replies_map_to_permanent_or_retryable_errors(
    error: Exception, kind: type[Exception], reason: str | None
) -> None:
    mapped = smtp_error(error)
    assert type(mapped) is kind
    if reason is not None:
        assert isinstance(mapped, PermanentError) and mapped.reason == reason
