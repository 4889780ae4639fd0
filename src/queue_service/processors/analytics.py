"""analytics.track and analytics.batch: events to the analytics service
(``POST /api/v1/events/track`` and ``/batch``, HMAC-signed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import Field

from queue_service.core.jobs import Priority
from queue_service.processors.base import Payload, processor
from queue_service.processors.context import JobContext

MAX_BATCH_EVENTS = 500


class TrackPayload(Payload):
    event: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)
    user_id: str | None = Field(default=None, max_length=200)
    timestamp: datetime | None = None


class BatchPayload(Payload):
    events: list[TrackPayload] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


def enqueued_at(job_id: UUID, fallback: datetime) -> datetime:
    """When the job was enqueued, from its UUIDv7's millisecond clock: the same
    on every retry, unlike the attempt's start."""
    if job_id.version == 7:
        return datetime.fromtimestamp((job_id.int >> 80) / 1000, tz=UTC)
    return fallback


def _event(p: TrackPayload, default_time: datetime) -> dict[str, Any]:
    when = p.timestamp or default_time
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # a naive time is taken as UTC
    return {
        "event": p.event,
        "properties": p.properties,
        "user_id": p.user_id,
        "timestamp": when.astimezone(UTC).isoformat(),
    }


@processor("analytics.track", payload=TrackPayload, queue="background", priority=Priority.LOW)
async def track(ctx: JobContext, p: TrackPayload) -> dict[str, str]:
    event = _event(p, enqueued_at(ctx.job.id, ctx.job.started_at))
    async with ctx.deps.gate.slot("internal", str(ctx.job.id)):
        await ctx.deps.providers.analytics.track(
            ctx.job.tenant_id, event, f"analytics:{ctx.job.id}"
        )
    return {"event": p.event}


@processor("analytics.batch", payload=BatchPayload, queue="background", priority=Priority.LOW)
async def batch(ctx: JobContext, p: BatchPayload) -> dict[str, int]:
    default_time = enqueued_at(ctx.job.id, ctx.job.started_at)
    events = [_event(e, default_time) for e in p.events]
    async with ctx.deps.gate.slot("internal", str(ctx.job.id)):
        await ctx.deps.providers.analytics.batch(
            ctx.job.tenant_id, events, f"analytics:{ctx.job.id}"
        )
    return {"events": len(events)}


PROCESSORS: list[object] = [track, batch]
