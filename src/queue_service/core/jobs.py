"""The job model: statuses, priorities, and the record a store returns."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson


class Priority(enum.IntEnum):
    """Lower runs first (SPEC §2)."""

    CRITICAL = 1
    HIGH = 3
    NORMAL = 5
    LOW = 7
    BACKGROUND = 10


class JobStatus(enum.StrEnum):
    WAITING = "waiting"
    DELAYED = "delayed"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


LIVE_STATUSES = frozenset({JobStatus.WAITING, JobStatus.DELAYED, JobStatus.ACTIVE})
FINISHED_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class Job:
    """A job as a caller sees it, live or finished."""

    id: UUID
    tenant_id: str
    queue: str
    type: str
    status: JobStatus
    priority: int
    data: dict[str, Any]
    attempts: int
    max_attempts: int
    idempotency_key: str | None
    created_by: str | None
    created_at: datetime
    run_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    last_error: str | None = None
    result: Any = None
    request_id: str | None = None
    replay_of: UUID | None = None

    def to_dict(self) -> dict[str, Any]:
        """The SPEC §6 shape (plus request_id)."""
        return {
            "id": str(self.id),
            "tenant_id": self.tenant_id,
            "queue": self.queue,
            "type": self.type,
            "status": self.status.value,
            "priority": self.priority,
            "data": self.data,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "idempotency_key": self.idempotency_key,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "run_at": self.run_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "last_error": self.last_error,
            "result": self.result,
        }


def job_from_row(row: Mapping[str, Any]) -> Job:
    """A Job from a row read by name (job_get_many's and the page statements'
    columns, which a new column cannot shift)."""
    return Job(
        id=row["id"],
        tenant_id=row["tenant_id"],
        queue=row["queue"],
        type=row["type"],
        status=JobStatus(row["status"]),
        priority=row["priority"],
        data=row["data"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        idempotency_key=row["idempotency_key"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        run_at=row["run_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        last_error=row["last_error"],
        result=row["result"],
        request_id=row["request_id"],
        replay_of=row["replay_of"],
    )


@dataclass(slots=True)  # not frozen: a frozen __init__ costs more than the batch insert
class NewJob:
    """What an enqueue asks for, already validated against the job type."""

    tenant_id: str
    queue: str
    type: str
    data: dict[str, Any]
    priority: int
    max_attempts: int
    max_stalled: int
    lease_seconds: int
    idempotency_key: str | None = None
    idempotency_ttl_seconds: int = 86_400
    delay_seconds: float = 0.0
    run_at: datetime | None = None
    created_by: str | None = None
    request_id: str | None = None
    trace_context: dict[str, str] | None = None
    replay_of: UUID | None = None
    job_id: UUID | None = None  # chosen by the caller when it must know it first
    data_json: str | None = None  # ``data`` already serialised, when the caller has it

    @property
    def payload_hash(self) -> str:
        return payload_hash(self.type, self.data)

    @property
    def runs_now(self) -> bool:
        return self.run_at is None and self.delay_seconds <= 0


def payload_hash(job_type: str, data: dict[str, Any]) -> str:
    """A stable digest of what an idempotency key promises: type and data."""
    body = orjson.dumps([job_type, data], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker holds: the lease token fences every write it makes."""

    id: UUID
    tenant_id: str
    queue: str
    type: str
    data: dict[str, Any]
    attempt: int
    max_attempts: int
    lease_token: int
    lease_seconds: int
    request_id: str | None
    trace_context: dict[str, str] | None
    started_at: datetime


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~1 µs a job in big batches
class EnqueueRequest:
    """An enqueue as a caller states it (SPEC §6's body plus who asks)."""

    type: str
    data: dict[str, Any]
    tenant_id: str
    queue: str | None = None
    priority: int | None = None
    idempotency_key: str | None = None
    run_at: datetime | None = None
    delay_ms: int | None = None
    max_attempts: int | None = None
    created_by: str | None = None
    request_id: str | None = None
    trace_context: dict[str, str] | None = None
