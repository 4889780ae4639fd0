"""Email: the narrow interface, messages built from the packaged templates
with a Message-ID derived from a stable key, and the choice between the SMTP
adapter (providers/smtp.py) and the development outbox."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Protocol

import structlog

from queue_service.observability.redaction import redact_text
from queue_service.providers.status import kind_status
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


def build_email_provider(settings: Settings) -> EmailProvider:
    """The SMTP adapter when SMTP_HOST is set, else the development outbox.
    Reads SMTP_PASSWORD (or SMTP_PASSWORD_FILE) now, not before."""
    if kind_status(settings, "email").development:
        from queue_service.providers.outbox import OutboxEmailProvider

        return OutboxEmailProvider(settings.outbox_dir, settings.smtp_from)
    assert settings.smtp_host  # what selected SMTP
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
    from queue_service.providers.smtp import SmtpEmailProvider

    return SmtpEmailProvider(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_from,
        tls=settings.smtp_tls,
        username=settings.smtp_username,
        password=password,
    )
