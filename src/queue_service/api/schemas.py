"""Request and response bodies of the HTTP API (SPEC §6)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

JobStatusName = Literal["waiting", "delayed", "active", "completed", "failed", "cancelled"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnqueueBody(Strict):
    type: str = Field(min_length=1, max_length=100, examples=["email.send"])
    data: dict[str, Any]
    queue: str | None = Field(default=None, min_length=1, max_length=100)
    priority: int | None = Field(default=None, ge=1, le=10)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)
    run_at: AwareDatetime | None = None
    delay_ms: int | None = Field(default=None, ge=0, le=366 * 86_400 * 1000)
    max_attempts: int | None = Field(default=None, ge=1, le=100)


class BatchBody(Strict):
    jobs: list[EnqueueBody] = Field(min_length=1, max_length=100)


class JobOut(BaseModel):
    id: UUID
    tenant_id: str
    queue: str
    type: str
    status: JobStatusName
    priority: int
    data: dict[str, Any]
    attempts: int
    max_attempts: int
    idempotency_key: str | None
    created_by: str | None
    created_at: datetime
    run_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str | None
    result: Any
    request_id: str | None = None


class BatchOut(BaseModel):
    jobs: list[JobOut]


class Counts(BaseModel):
    waiting: int
    delayed: int
    active: int
    completed: int
    failed: int
    cancelled: int


class QueueOut(BaseModel):
    name: str
    paused: bool
    counts: Counts
    oldest_waiting_age_seconds: float | None


class QueueList(BaseModel):
    items: list[QueueOut]
    next_cursor: str | None = None


class QueueStatus(QueueOut):
    concurrency: int
    job_types: list[str]
    sample_jobs: list[JobOut]


class JobList(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class ClearOut(BaseModel):
    queue: str
    cancelled: int


class DeadLetterOut(BaseModel):
    id: UUID
    tenant_id: str
    original_job_id: UUID
    queue: str
    type: str
    data: dict[str, Any]
    error: str | None
    attempts: int
    created_by: str | None
    failed_at: datetime
    replayed_job_id: UUID | None
    replayed_at: datetime | None


class DeadLetterList(BaseModel):
    items: list[DeadLetterOut]
    next_cursor: str | None


class ReplayOut(BaseModel):
    dead_letter_id: UUID
    job: JobOut


class BulkReplayBody(Strict):
    queue: str | None = None
    type: str | None = None
    error_contains: str | None = Field(default=None, max_length=200)
    failed_after: AwareDatetime | None = None
    failed_before: AwareDatetime | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    dry_run: bool = True


class BulkReplayOut(BaseModel):
    dry_run: bool
    matched: int
    replayed: list[ReplayOut]
    skipped_already_replayed: int


class RateLimitOut(BaseModel):
    key: str
    kind: Literal["inbound"]
    limit: int
    window_seconds: int
    current_count: int
    remaining: int
    reset_at: datetime | None


class BreakerOut(BaseModel):
    """An outbound service's circuit breaker (SPEC §5, decision 0009)."""

    state: Literal["closed", "open", "half_open"]
    consecutive_failures: int
    failures_to_open: int
    open_seconds: float
    opened_at: datetime | None
    half_open_at: datetime | None
    last_failure: str | None


class OutboundLimitOut(BaseModel):
    """An outbound service's token bucket, shared by every worker process."""

    key: str
    kind: Literal["outbound"]
    size: float
    refill_per_second: float
    tokens: float
    # Tokens promised to waiting jobs (reservations), and when the last is due.
    reserved: int
    reserved_until: datetime | None
    max_in_flight: int
    in_flight: int
    stopped: bool
    stopped_at: datetime | None
    stopped_by: str | None
    stop_reason: str | None
    breaker: BreakerOut


class StopBody(Strict):
    reason: str | None = Field(default=None, max_length=500, examples=["vendor incident"])


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}


class JobEventOut(BaseModel):
    """One entry of a job's history (enqueued, started, retried, failed...)."""

    event: str
    attempt: int
    worker_id: str | None
    started_at: datetime | None
    at: datetime
    error: str | None


class JobEventList(BaseModel):
    items: list[JobEventOut]
    trace_id: str | None = Field(
        default=None,
        description="The W3C trace id the job was enqueued under (tracing on), else null",
    )
