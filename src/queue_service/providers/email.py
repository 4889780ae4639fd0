"""Email: the narrow interface, messages built from the packaged templates
with a Message-ID derived from a stable key, and the SMTP adapter
(aiosmtplib) that maps SMTP replies to permanent or retryable errors."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Literal, Protocol

import aiosmtplib
import structlog
from pydantic import SecretStr

from queue_service.errors import PermanentError, RetryableError
from queue_service.observability.redaction import redact_text
from queue_service.providers.templates import render_email
from queue_service.settings import Settings

log = structlog.get_logger("queue_service.providers.email")

DEFAULT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """One rendered message to one recipient."""

    to: str
    subject: str
    text: str
    html: str
    message_id: str  # "<...@domain>", the same on every retry


@dataclass(frozen=True, slots=True)
class EmailReceipt:
    message_id: str
    provider: str
    detail: str  # the server's reply, or the outbox file


class EmailProvider(Protocol):
    """What sends email: the SMTP adapter or the development outbox."""

    name: str
    is_development: bool
    sender: str  # the From address

    async def send(self, email: OutgoingEmail) -> EmailReceipt:
        """Hand the message over; PermanentError or RetryableError if refused."""

    async def aclose(self) -> None: ...


def message_id_for(key: str, sender: str) -> str:
    """A Message-ID that depends only on ``key`` (a tenant-scoped message key),
    so a message sent twice carries the same id and receivers drop the copy."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    domain = sender.rpartition("@")[2].strip("<> ") or "queue-service.invalid"
    return f"<{digest}@{domain}>"


def compose(
    template: str, context: Mapping[str, Any], *, to: str, key: str, sender: str
) -> OutgoingEmail:
    """Render ``template`` for ``to``; PermanentError (validation) when the
    context does not fit it. ``key`` makes the Message-ID (see message_id_for)."""
    rendered = render_email(template, context)
    return OutgoingEmail(
        to=to,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        message_id=message_id_for(key, sender),
    )


def to_mime(email: OutgoingEmail, sender: str) -> EmailMessage:
    """multipart/alternative: the text part first, the HTML part preferred."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Message-ID"] = email.message_id
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message.set_content(email.text)
    message.add_alternative(email.html, subtype="html")
    return message


def mask_address(address: str) -> str:
    """``jane@example.com`` -> ``j***@example.com``, for logs and results."""
    return redact_text(address)


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
            raise smtp_error(exc) from None
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


def status(settings: Settings) -> tuple[str, bool]:
    """(provider name, is development) as configured; builds nothing, reads no secret."""
    return ("smtp", False) if settings.smtp_host else ("outbox", True)


def build_email_provider(settings: Settings) -> EmailProvider:
    """The SMTP adapter when SMTP_HOST is set, else the development outbox.
    Reads SMTP_PASSWORD (or SMTP_PASSWORD_FILE) now, not before."""
    if not settings.smtp_host:
        from queue_service.providers.outbox import OutboxEmailProvider

        return OutboxEmailProvider(settings.outbox_dir, settings.smtp_from)
    password = settings.secret("SMTP_PASSWORD")
    if settings.smtp_username and password is None:
        raise ValueError("SMTP_USERNAME is set but SMTP_PASSWORD (or SMTP_PASSWORD_FILE) is not")
    log.info(
        "email provider: SMTP",
        host=settings.smtp_host,
        port=settings.smtp_port,
        tls=settings.smtp_tls,
        auth=bool(settings.smtp_username),
    )
    return SmtpEmailProvider(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_from,
        tls=settings.smtp_tls,
        username=settings.smtp_username,
        password=password,
    )
