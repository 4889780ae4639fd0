"""The attempt hook that makes a span per attempt, a child of the span that
enqueued the job (its stored trace context), current while the handler runs."""

from __future__ import annotations

from typing import Any

from opentelemetry import context, trace

from queue_service.core.jobs import ClaimedJob
from queue_service.core.outcome import (
    Cancelled,
    Completed,
    CompletedInTransaction,
    Failed,
    LeaseLost,
    Outcome,
    Released,
    Retry,
    Snoozed,
)
from queue_service.observability.redaction import redact_text
from queue_service.observability.tracing import active, job_parent

OUTCOMES: dict[type[Any], str] = {
    Completed: "completed",
    CompletedInTransaction: "completed",
    Retry: "retry",
    Snoozed: "snoozed",
    Failed: "failed",
    Cancelled: "cancelled",
    Released: "released",
    LeaseLost: "lease_lost",
}
MAX_STATUS_CHARS = 500


class AttemptSpans:
    """``before`` starts the span and makes it current in the attempt's task,
    so the handler's queries and provider calls become its children; ``after``
    records the outcome and ends it (before the outcome is persisted: the
    acknowledgement, batched across jobs, belongs to no attempt)."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def before(self, job: ClaimedJob) -> Any:
        attributes: dict[str, str | int] = {
            "messaging.system": "queue_service",
            "messaging.operation.type": "process",
            "messaging.destination.name": job.queue,
            "messaging.message.id": str(job.id),
            "queue_service.job.type": job.type,
            "queue_service.job.attempt": job.attempt,
            "queue_service.job.max_attempts": job.max_attempts,
            "queue_service.tenant.id": job.tenant_id,
        }
        if job.request_id:
            attributes["queue_service.request.id"] = job.request_id
        span = self.tracer.start_span(
            f"attempt {job.type}",
            context=job_parent(job.trace_context),
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
        )
        return span, context.attach(trace.set_span_in_context(span))

    def after(self, job: ClaimedJob, outcome: Outcome, duration_seconds: float, state: Any) -> None:
        if state is None:  # ``before`` raised: no span to end
            return
        span, token = state
        context.detach(token)
        span.set_attribute("queue_service.job.outcome", OUTCOMES.get(type(outcome), "unknown"))
        if isinstance(outcome, Failed | Retry):
            # Handlers' errors are redacted like everything else that leaves
            # the process: a span is as readable as a log line.
            span.set_status(trace.StatusCode.ERROR, redact_text(outcome.error)[:MAX_STATUS_CHARS])
        span.end()


def tracing_hooks() -> list[AttemptSpans]:
    """The attempt span hook when tracing is on; none (no cost) when it is off."""
    tracing = active()
    return [] if tracing is None else [AttemptSpans(tracing.tracer("queue_service.worker"))]
