"""webhook.process: one signed event to a tenant's configured endpoint, or to a
URL given in the job (SSRF-checked), with one webhook-id across every retry."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from queue_service.core.jobs import Priority
from queue_service.core.retry import WEBHOOK_RETRY
from queue_service.errors import PermanentError, RetryableError, Snooze
from queue_service.observability.metrics import WEBHOOKS_FAILED, WEBHOOKS_SENT
from queue_service.processors.base import Payload, processor
from queue_service.processors.context import JobContext
from queue_service.providers.webhooks import (
    DeliveryResult,
    Destination,
    display_target,
    webhook_id,
)

ENDPOINT_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
# A job that names a URL is signed with the secrets of this endpoint of its
# tenant: the tenant's signing identity, configured like any endpoint. Platform
# events (payments, refunds, fulfilled orders) go to it too, when configured.
URL_SIGNING_ENDPOINT = "default"


def platform_event(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """webhook.process data for a platform event: to the tenant's default
    endpoint if it has one, else nothing is sent (and nothing dead-lettered)."""
    return {
        "event": event,
        "payload": payload,
        "endpoint": URL_SIGNING_ENDPOINT,
        "if_configured": True,
    }


# A 429 without Retry-After: come back after this, without using an attempt.
DEFAULT_THROTTLE_SECONDS = 30.0
_REJECTION_REASONS = {401: "authentication", 403: "forbidden", 404: "not_found"}
_RECORDED = {
    "delivered": "delivered",
    "development": "development",
    "gone": "disabled",
    "throttled": "snoozed",
    "refused": "refused",
    "failed": "retry",
    "redirect": "failed",
    "rejected": "failed",
}


class WebhookPayload(Payload):
    event: str = Field(min_length=1, max_length=200)
    payload: dict[str, Any]
    endpoint: str | None = Field(default=None, pattern=ENDPOINT_NAME)
    url: str | None = Field(default=None, max_length=2048)
    # Platform events (a payment succeeded, an order was fulfilled) go to the
    # tenant's endpoint only if it has configured one: a tenant that takes no
    # webhooks must not collect a dead letter per event.
    if_configured: bool = False

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        try:
            parts = urlsplit(url)
        except ValueError:
            raise ValueError("url is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("url must be an absolute http:// or https:// URL")
        return url

    @model_validator(mode="after")
    def _one_destination(self) -> WebhookPayload:
        if (self.endpoint is None) == (self.url is None):
            raise ValueError("give exactly one of endpoint (a configured name) or url")
        return self


@processor(
    "webhook.process",
    payload=WebhookPayload,
    queue="communication",
    priority=Priority.NORMAL,
    concurrency=10,
    lease_seconds=30,
    max_stalled=3,
    timeout_seconds=30,
    retry=WEBHOOK_RETRY,
)
async def process_webhook(ctx: JobContext, p: WebhookPayload) -> dict[str, Any]:
    store = ctx.deps.store
    webhooks = ctx.deps.providers.webhooks
    tenant = ctx.job.tenant_id
    origin = await store.webhook_event_origin(ctx.job.id)
    if origin is None:  # the job row is gone: its lease was lost
        raise RetryableError("the job's row is not visible")
    msg_id = webhook_id(tenant, origin.identity, p.event, p.payload)

    name = p.endpoint or URL_SIGNING_ENDPOINT
    endpoint = await store.get_webhook_endpoint(tenant, name)
    if endpoint is None and p.endpoint is not None and webhooks.sink is not None:
        result = webhooks.sink.accept(tenant, p.endpoint, p.event, msg_id)
        await _record(ctx, msg_id, p.endpoint, "(development sink)", result)
        return {"webhook_id": msg_id, "delivered_to": "development sink"}
    if endpoint is None and p.if_configured:
        return {"webhook_id": msg_id, "skipped": f"tenant has no endpoint {name!r}"}
    if endpoint is None:
        raise PermanentError(_missing(tenant, p.endpoint), reason="not_found")
    if p.endpoint is not None and not endpoint.enabled:
        since = f"{endpoint.disabled_at:%Y-%m-%d %H:%M:%S %Z}" if endpoint.disabled_at else "?"
        raise PermanentError(
            f"webhook endpoint {p.endpoint!r} of tenant {tenant!r} is disabled since {since}"
            f" ({endpoint.disabled_reason}); re-enable it with"
            f" `queue-service webhooks enable --tenant {tenant} {p.endpoint}`",
            reason="endpoint_disabled",
        )
    if p.url is not None:
        destination = Destination(p.url, endpoint.secrets, configured=False)
    else:
        destination = Destination(endpoint.url, endpoint.secrets, configured=True)

    async with ctx.deps.gate.slot("webhooks", str(ctx.job.id)):
        result = await webhooks.sender.deliver(
            destination, msg_id, p.event, p.payload, origin.created_at
        )
    # Raised outside the slot: a receiver's failure is that receiver's, and
    # must not count against the breaker every tenant's webhooks share.
    await _record(ctx, msg_id, p.endpoint, display_target(destination.url), result)
    if result.outcome == "delivered":
        WEBHOOKS_SENT.inc()
    elif result.outcome != "throttled":  # a 429 snoozes: not a failure
        WEBHOOKS_FAILED.inc()
    if result.outcome == "gone" and p.endpoint is not None:
        await store.disable_webhook_endpoint(
            tenant, p.endpoint, f"the receiver answered 410 Gone (job {ctx.job.id})"
        )
    _raise_for(result, p)
    return {"webhook_id": msg_id, "status_code": result.status_code}


def _missing(tenant: str, endpoint: str | None) -> str:
    if endpoint is not None:
        return (
            f"tenant {tenant!r} has no webhook endpoint named {endpoint!r}; add it with"
            f" `queue-service webhooks add --tenant {tenant} {endpoint} URL`"
        )
    return (
        f"a webhook to a URL is signed with the secret of tenant {tenant!r}'s"
        f" {URL_SIGNING_ENDPOINT!r} endpoint, and it has none; add it with"
        f" `queue-service webhooks add --tenant {tenant} {URL_SIGNING_ENDPOINT} URL`"
    )


def _raise_for(result: DeliveryResult, p: WebhookPayload) -> None:
    """The job error an undelivered attempt means (SPEC §3 and docs/providers/webhooks.md)."""
    where = f"endpoint {p.endpoint!r}" if p.endpoint else "the URL"
    status = result.status_code
    if result.outcome == "delivered":
        return
    if result.outcome == "throttled":
        raise Snooze(
            result.retry_after or DEFAULT_THROTTLE_SECONDS,
            f"{where} answered 429 Too Many Requests",
        )
    if result.outcome == "failed":
        raise RetryableError(f"{where}: {result.error}")
    if result.outcome == "gone":
        disabled = "; the endpoint is now disabled" if p.endpoint else ""
        raise PermanentError(f"{where} answered 410 Gone{disabled}", reason="gone")
    if result.outcome == "redirect":
        raise PermanentError(
            f"{where} answered HTTP {status}: redirects are not followed", reason="redirect"
        )
    if result.outcome == "refused":
        raise PermanentError(f"{where}: {result.error}", reason="blocked_destination")
    reason = _REJECTION_REASONS.get(status or 0, "invalid_request")
    raise PermanentError(f"{where} refused the webhook: HTTP {status}", reason=reason)


async def _record(
    ctx: JobContext, msg_id: str, endpoint: str | None, target: str, result: DeliveryResult
) -> None:
    outcome = _RECORDED[result.outcome]
    if outcome == "retry" and ctx.is_last_attempt:
        outcome = "failed"
    await ctx.deps.store.record_webhook_delivery(
        tenant=ctx.job.tenant_id,
        job_id=ctx.job.id,
        webhook_id=msg_id,
        endpoint=endpoint,
        target=target,
        attempt=ctx.attempt,
        outcome=outcome,
        status_code=result.status_code,
        excerpt=result.excerpt,
        error=result.error,
        duration_ms=result.duration_ms,
    )


PROCESSORS: list[object] = [process_webhook]
