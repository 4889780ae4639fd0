"""The SMTP adapter (aiosmtplib): one message per connection, SMTP replies
mapped to permanent or retryable job errors."""

from __future__ import annotations

from typing import Literal

import aiosmtplib
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import SecretStr

from queue_service.errors import PermanentError, RetryableError
from queue_service.observability.redaction import redact_text
from queue_service.observability.tracing import tracer
from queue_service.providers.email import (
    DEFAULT_TIMEOUT_SECONDS,
    EmailReceipt,
    OutgoingEmail,
    to_mime,
)
from queue_service.settings import Settings


class SmtpEmailProvider:
    """Sends through an SMTP server, one connection per message (a pooled
    connection would save a handshake but outlive server-side idle limits)."""

    name = "smtp"
    is_development = False

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        tls: Literal["starttls", "tls", "none"] = "starttls",
        username: str | None = None,
        password: SecretStr | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.tls = tls
        self.username = username
        self._password = password
        self.timeout = timeout

    async def send(self, email: OutgoingEmail) -> EmailReceipt:
        password = self._password.get_secret_value() if self._password else None
        # httpx calls get their spans from the instrumentation; SMTP has none.
        # Exceptions are not recorded as they are: a refusal names the recipient.
        with tracer(__name__).start_as_current_span(
            "smtp send",
            kind=SpanKind.CLIENT,
            attributes={"server.address": self.host, "server.port": self.port},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                _, reply = await aiosmtplib.send(
                    to_mime(email, self.sender),
                    sender=self.sender,
                    recipients=[email.to],
                    hostname=self.host,
                    port=self.port,
                    username=self.username,
                    password=password if self.username else None,
                    use_tls=self.tls == "tls",
                    start_tls=self.tls == "starttls",
                    timeout=self.timeout,
                )
            except Exception as exc:
                error = smtp_error(exc)
                span.set_status(StatusCode.ERROR, redact_text(str(error))[:500])
                raise error from None
        return EmailReceipt(email.message_id, self.name, redact_text(reply))

    async def aclose(self) -> None:
        """Nothing held between messages."""


def smtp_error(exc: Exception) -> Exception:
    """The job error for an SMTP failure: 5xx replies and refused credentials
    are permanent, 4xx replies and network trouble are worth a retry.
    Server text is redacted: replies often quote the recipient."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        exc = exc.recipients[0]
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"SMTP {exc.code}: {redact_text(exc.message)}"
        if exc.code < 500:
            return RetryableError(text)
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            return PermanentError(text, reason="authentication")
        if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
            return PermanentError(text, reason="recipient_rejected")
        return PermanentError(text, reason="rejected")
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        # e.g. STARTTLS required by SMTP_TLS but not offered: no retry fixes it.
        return PermanentError(f"SMTP: {redact_text(str(exc))}", reason="configuration")
    if isinstance(exc, aiosmtplib.SMTPException | OSError | TimeoutError):
        return RetryableError(f"SMTP {type(exc).__name__}: {redact_text(str(exc))}")
    return exc


async def probe_smtp(settings: Settings, within_seconds: float) -> None:
    """Connect (TLS when SMTP_TLS=tls), EHLO, NOOP, QUIT: no AUTH, no mail."""
    assert settings.smtp_host
    client = aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        use_tls=settings.smtp_tls == "tls",
        start_tls=False,
        timeout=within_seconds,
    )
    await client.connect()
    try:
        await client.ehlo()
        await client.noop()
    finally:
        try:
            await client.quit()
        except aiosmtplib.SMTPException:
            client.close()
