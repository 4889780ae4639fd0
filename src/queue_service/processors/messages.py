"""email.send and sms.send (SPEC §7): sent once per job even when retried or
rescued after the send, through a sent-ledger row committed the moment the
provider accepted (see docs/providers/email.md for the one remaining window)."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from queue_service.core.jobs import Priority
from queue_service.core.retry import RetryPolicy
from queue_service.errors import LeaseLostError
from queue_service.observability.metrics import EMAILS_FAILED, EMAILS_SENT
from queue_service.processors.base import Payload, processor
from queue_service.processors.context import JobContext
from queue_service.providers.email import compose, mask_address
from queue_service.providers.sms import E164, MAX_SMS_CHARS, mask_number
from queue_service.providers.templates import TemplateName, missing_keys

if TYPE_CHECKING:
    from queue_service.store.messages import Channel, LedgerEntry

EMAIL_RETRY = RetryPolicy(3, "linear", 2.0, 10.0, jitter=False)  # SPEC §3
# One address, no display name: local@domain with a dotted domain. Full RFC
# 5322 is not worth it: the SMTP server is the final judge (550 -> DLQ).
_ADDRESS = re.compile(r"^[^\s@<>()\[\],;:\"]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")


def _address(value: str) -> str:
    if len(value) > 254 or not _ADDRESS.match(value):
        raise ValueError("not an email address (local@example.com)")
    return value


class EmailPayload(Payload):
    to: Annotated[str, AfterValidator(_address)]
    template: TemplateName
    context: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _context_fills_template(self) -> EmailPayload:
        # Refused at enqueue (422) rather than failing in the worker; the
        # renderer checks again (types, values) and fails permanently.
        missing = missing_keys(self.template, self.context)
        if missing:
            raise ValueError(f"template {self.template!r} needs context keys: {', '.join(missing)}")
        return self


class SmsPayload(Payload):
    to: Annotated[str, Field(pattern=E164.pattern)]
    body: Annotated[str, Field(min_length=1, max_length=MAX_SMS_CHARS)]


async def _ledger(ctx: JobContext, channel: Channel) -> LedgerEntry:
    entry = await ctx.deps.store.message_ledger(ctx.job.tenant_id, ctx.job.id, channel)
    if entry is None:
        # Not in `jobs` any more: finished or cancelled while we held it.
        raise LeaseLostError(f"job {ctx.job.id} is no longer active")
    return entry


async def _record(ctx: JobContext, channel: Channel, key: str, provider: str, ref: str) -> None:
    """Commit the ledger row now, before the job completes. Shielded: once the
    provider accepted, a timeout or lease loss must not cancel the record of it."""
    record = ctx.deps.store.record_sent_message(
        ctx.job.tenant_id, key, channel, ctx.job.id, provider, ref
    )
    await asyncio.shield(record)


@processor(
    "email.send",
    payload=EmailPayload,
    queue="communication",
    priority=Priority.NORMAL,
    concurrency=20,
    lease_seconds=15,
    max_stalled=5,
    timeout_seconds=30,
    retry=EMAIL_RETRY,
)
async def send_email(ctx: JobContext, p: EmailPayload) -> dict[str, Any]:
    """Render the template and send it once per message key."""
    entry = await _ledger(ctx, "email")
    to = mask_address(p.to)
    if entry.sent is not None:
        ctx.log.info("email already sent; not sending again", to=to, sent_by=str(entry.sent.job_id))
        return {"to": to, "message_id": entry.sent.provider_ref, "already_sent": True}
    provider = ctx.deps.providers.email
    # Tenant-scoped, so two tenants' equal idempotency keys never share an id.
    email = compose(
        p.template,
        p.context,
        to=p.to,
        key=f"{ctx.job.tenant_id}/{entry.message_key}",
        sender=provider.sender,
    )
    async with ctx.deps.gate.slot("smtp", str(ctx.job.id)):
        try:
            receipt = await provider.send(email)
        except Exception:
            EMAILS_FAILED.labels(p.template).inc()
            raise
        await _record(ctx, "email", entry.message_key, receipt.provider, receipt.message_id)
    EMAILS_SENT.labels(p.template).inc()
    ctx.log.info(
        "email sent",
        to=to,
        template=p.template,
        # The id's local part: the whole id looks like an address to the redactor.
        message_id=receipt.message_id.strip("<>").partition("@")[0],
        provider=receipt.provider,
    )
    return {"to": to, "message_id": receipt.message_id, "already_sent": False}


@processor(
    "sms.send",
    payload=SmsPayload,
    queue="communication",
    priority=Priority.NORMAL,
    lease_seconds=30,
)
async def send_sms(ctx: JobContext, p: SmsPayload) -> dict[str, Any]:
    """Send the SMS once per message key."""
    entry = await _ledger(ctx, "sms")
    to = mask_number(p.to)
    if entry.sent is not None:
        ctx.log.info("SMS already sent; not sending again", to=to, sent_by=str(entry.sent.job_id))
        return {"to": to, "sid": entry.sent.provider_ref, "already_sent": True}
    provider = ctx.deps.providers.sms
    async with ctx.deps.gate.slot("twilio", str(ctx.job.id)):
        receipt = await provider.send_sms(p.to, p.body)
        await _record(ctx, "sms", entry.message_key, receipt.provider, receipt.sid)
    ctx.log.info("SMS sent", to=to, sid=receipt.sid, provider=receipt.provider)
    return {"to": to, "sid": receipt.sid, "already_sent": False}


# For QUEUE_SERVICE_PROCESSORS=queue_service.processors.messages:PROCESSORS
# or the lead's entry point.
PROCESSORS: list[object] = [send_email, send_sms]
