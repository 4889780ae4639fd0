"""Planning an enqueue, with no I/O: ids, idempotency keys repeated within a
batch, the parameters of the one insert rule (job_insert, migration 0015),
and each job's outcome read back from its answer. Shared by every caller
(the async store, the synchronous writer, the API, a coalesced window), so
all keep the same rules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from queue_service.core.ids import uuid7_many
from queue_service.core.jobs import Job, JobStatus, NewJob
from queue_service.errors import IdempotencyConflictError
from queue_service.store.db import json_text


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 3x, once per job of a batch
class Enqueued:
    """The outcome of one enqueue: the job's id, whether it is new, and the
    job as inserted when the insert answered with it (job_insert does)."""

    job_id: UUID
    created: bool
    job: Job | None = None


# One job's outcome: enqueued (new or a replay), or its key is live for
# another payload. A value, so that one caller's conflict is not another's.
EnqueueResult = Enqueued | IdempotencyConflictError


class IdempotencyRaceError(RuntimeError):
    """A key expired between insert and read-back; the enqueue is retried."""


class EnqueuePlan:
    """One attempt at inserting ``jobs`` with job_insert: what to send, then
    what came of each job.

    A key repeated within the jobs is sent once (its first use); the later
    uses are answered as if they had come after it: a replay of whatever job
    the key names afterwards when their payload matches, a conflict otherwise.
    """

    def __init__(self, jobs: Sequence[NewJob], scope: str | None = None) -> None:
        self.jobs = jobs
        self.scope = scope
        self.ids = plan_ids(jobs)
        self.first_use: dict[int, int] = {}  # a repeated key's later use -> its first
        self.unique: list[int] = []
        firsts: dict[tuple[str, str], int] = {}
        for i, job in enumerate(jobs):
            if job.idempotency_key is not None:
                first = firsts.setdefault((job.tenant_id, job.idempotency_key), i)
                if first != i:
                    self.first_use[i] = first
                    continue
            self.unique.append(i)
        self.sent = self.unique  # the jobs job_insert inserts; the others are copied
        self.copied: list[int] = []

    def copy_keyless(self) -> list[int]:
        """Take the keyless jobs that run now out of ``sent``, for a bulk COPY
        (nothing to decide for them); returns them."""
        self.copied = [
            i for i in self.unique if self.jobs[i].idempotency_key is None and self.jobs[i].runs_now
        ]
        if self.copied:
            taken = set(self.copied)
            self.sent = [i for i in self.unique if i not in taken]
        return self.copied

    def params(self) -> dict[str, Any]:
        """job_insert's parameters: the jobs in ``sent``, in that order."""
        return insert_params(self.jobs, self.ids, self.sent, self.scope)

    def resolve(self, rows: Iterable[Mapping[str, Any]]) -> list[EnqueueResult]:
        """Each job's outcome from job_insert's rows (read by name), in the
        jobs' order. Raises IdempotencyRaceError when a key expired between
        the insert and its read-back (the caller tries again)."""
        out: list[EnqueueResult | None] = [None] * len(self.jobs)
        for i in self.copied:
            out[i] = Enqueued(self.ids[i], True)
        repeated = set(self.first_use.values())  # first uses of a key used again
        holders: dict[int, tuple[UUID, str]] = {}  # first use -> (job the key names, hash)
        for row in rows:
            i = self.sent[row["ord"] - 1]
            job = self.jobs[i]
            if row["created"]:
                out[i] = Enqueued(
                    self.ids[i],
                    True,
                    inserted_job(self.ids[i], job, row["created_at"], row["run_at"]),
                )
                if i in repeated:
                    holders[i] = (self.ids[i], job.payload_hash)
                continue
            key = job.idempotency_key
            assert key is not None  # only a keyed job is ever skipped
            if row["job_id"] is None:
                raise IdempotencyRaceError(key)
            holders[i] = (row["job_id"], row["payload_hash"])
            out[i] = _against(job, key, row["job_id"], row["payload_hash"])
        for i, first in self.first_use.items():
            key = self.jobs[i].idempotency_key
            assert key is not None
            out[i] = _against(self.jobs[i], key, *holders[first])
        assert all(o is not None for o in out), "job_insert answered every job"
        return out  # type: ignore[return-value]


def _against(job: NewJob, key: str, holder: UUID, digest: str) -> EnqueueResult:
    """A job whose key names ``holder``: a replay if the payloads match."""
    if digest != job.payload_hash:
        return IdempotencyConflictError(key, str(holder))
    return Enqueued(holder, False)


def first_conflict(results: Sequence[EnqueueResult]) -> list[Enqueued]:
    """All-or-none callers: the outcomes, or the first conflict raised."""
    for r in results:
        if isinstance(r, IdempotencyConflictError):
            raise r
    return results  # type: ignore[return-value]


def inserted_job(job_id: UUID, job: NewJob, created_at: datetime, run_at: datetime) -> Job:
    """The job as job_insert inserted it: what was asked, on the database clock."""
    return Job(
        id=job_id,
        tenant_id=job.tenant_id,
        queue=job.queue,
        type=job.type,
        # created_at is the transaction's now(): later run_at means delayed.
        status=JobStatus.DELAYED if run_at > created_at else JobStatus.WAITING,
        priority=job.priority,
        data=job.data,
        attempts=0,
        max_attempts=job.max_attempts,
        idempotency_key=job.idempotency_key,
        created_by=job.created_by,
        created_at=created_at,
        run_at=run_at,
        request_id=job.request_id,
        replay_of=job.replay_of,
    )


def plan_ids(jobs: Sequence[NewJob]) -> list[UUID]:
    """An id per job: the caller's when it chose one, else a fresh UUIDv7."""
    fresh = uuid7_many(len(jobs))
    return [job.job_id or new for job, new in zip(jobs, fresh, strict=True)]


def keyless_params(job: NewJob, job_id: UUID) -> dict[str, Any]:
    """Parameters of job_insert_keyless (one job without a key)."""
    return {
        "id": job_id,
        "tenant": job.tenant_id,
        "queue": job.queue,
        "type": job.type,
        "priority": job.priority,
        "data": job.data_json or json_text(job.data),
        "max_attempts": job.max_attempts,
        "max_stalled": job.max_stalled,
        "lease": job.lease_seconds,
        "delay": job.delay_seconds,
        "run_at": job.run_at,
        "created_by": job.created_by,
        "request_id": job.request_id,
        "trace": None if job.trace_context is None else json_text(job.trace_context),
        "replay_of": job.replay_of,
    }


def insert_params(
    jobs: Sequence[NewJob], ids: list[UUID], indexes: list[int], scope: str | None = None
) -> dict[str, Any]:
    """Parameters of job_insert: the chosen jobs as parallel arrays; ``scope``
    is the authenticated caller's tenant (row-level security), if any."""
    chosen = [jobs[i] for i in indexes]
    return {
        "scope": scope,
        "ids": [ids[i] for i in indexes],
        "tenants": [j.tenant_id for j in chosen],
        "queues": [j.queue for j in chosen],
        "types": [j.type for j in chosen],
        "priorities": [j.priority for j in chosen],
        "data": [j.data_json or json_text(j.data) for j in chosen],
        "max_attempts": [j.max_attempts for j in chosen],
        "max_stalled": [j.max_stalled for j in chosen],
        "leases": [j.lease_seconds for j in chosen],
        "keys": [j.idempotency_key for j in chosen],
        "ttls": [j.idempotency_ttl_seconds for j in chosen],
        "hashes": [j.payload_hash if j.idempotency_key else None for j in chosen],
        "delays": [j.delay_seconds for j in chosen],
        "run_ats": [j.run_at for j in chosen],
        "created_by": [j.created_by for j in chosen],
        "request_ids": [j.request_id for j in chosen],
        "traces": [None if j.trace_context is None else json_text(j.trace_context) for j in chosen],
        "replay_of": [j.replay_of for j in chosen],
    }
