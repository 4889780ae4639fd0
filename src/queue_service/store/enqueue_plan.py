"""Planning an enqueue, with no I/O: ids, idempotency keys repeated within a
batch, statement parameters, and reading the outcome back. Shared by the
async store and the synchronous writer, so both keep the same rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from queue_service.core.ids import uuid7_many
from queue_service.core.jobs import Job, NewJob
from queue_service.errors import IdempotencyConflictError
from queue_service.store.db import json_text


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 3x, once per job of a batch
class Enqueued:
    """The outcome of one enqueue: the job's id, whether it is new, and the
    job as inserted when the statement returned it (a single job with an
    idempotency key, or the API's one-statement insert)."""

    job_id: UUID
    created: bool
    job: Job | None = None


class IdempotencyRaceError(RuntimeError):
    """A key expired between insert and read-back; the enqueue is retried."""


class EnqueuePlan:
    """One attempt at inserting ``jobs``: what to insert, then what came of it."""

    def __init__(self, jobs: Sequence[NewJob]) -> None:
        self.jobs = jobs
        self.ids, self.duplicates = plan_ids(jobs)
        self.unique = [i for i in range(len(jobs)) if i not in self.duplicates]
        self._resolved: dict[int, Enqueued] = {}
        self._missing: dict[str, list[int]] = {}

    def record_inserted(self, inserted: Mapping[UUID, Job | None]) -> dict[str, list[str]]:
        """Note what went in; returns, per tenant, the keys to read back."""
        if len(inserted) == len(self.jobs):  # every job went in (a plain batch)
            self._resolved = {i: Enqueued(u, True, inserted[u]) for i, u in enumerate(self.ids)}
            return {}
        for i in self.unique:
            if self.ids[i] in inserted:
                self._resolved[i] = Enqueued(self.ids[i], True, inserted[self.ids[i]])
            else:
                self._missing.setdefault(self.jobs[i].tenant_id, []).append(i)
        return {
            tenant: [self.jobs[i].idempotency_key or "" for i in indexes]
            for tenant, indexes in self._missing.items()
        }

    def record_live(self, tenant: str, live: Mapping[str, tuple[UUID, str]]) -> None:
        """Resolve the tenant's skipped jobs from their live keys (job id, payload hash)."""
        for i in self._missing.get(tenant, []):
            key = self.jobs[i].idempotency_key
            assert key is not None  # only keyed jobs can be skipped
            if key not in live:
                # The key expired between the two statements: the caller
                # retries and the insert takes it over.
                raise IdempotencyRaceError(key)
            job_id, digest = live[key]
            if digest != self.jobs[i].payload_hash:
                raise IdempotencyConflictError(key, str(job_id))
            self._resolved[i] = Enqueued(job_id, False)

    def results(self) -> list[Enqueued]:
        for i, first in self.duplicates.items():
            self._resolved[i] = Enqueued(self._resolved[first].job_id, False)
        return [self._resolved[i] for i in range(len(self.jobs))]


def plan_ids(jobs: Sequence[NewJob]) -> tuple[list[UUID], dict[int, int]]:
    """A new id per job; a key repeated within the batch maps to its first use."""
    fresh = uuid7_many(len(jobs))
    ids = [job.job_id or new for job, new in zip(jobs, fresh, strict=True)]
    first_by_key: dict[tuple[str, str], int] = {}
    duplicates: dict[int, int] = {}
    for i, job in enumerate(jobs):
        if job.idempotency_key is None:
            continue
        scope = (job.tenant_id, job.idempotency_key)
        if scope in first_by_key:
            first = first_by_key[scope]
            if jobs[first].payload_hash != job.payload_hash:
                raise IdempotencyConflictError(job.idempotency_key, str(ids[first]))
            duplicates[i] = first
        else:
            first_by_key[scope] = i
    return ids, duplicates


def one_params(job: NewJob, job_id: UUID, scope: str | None = None) -> dict[str, Any]:
    """Parameters of job_insert_one; ``scope`` is the authenticated caller's tenant."""
    return {
        "scope": scope,
        "id": job_id,
        "tenant": job.tenant_id,
        "queue": job.queue,
        "type": job.type,
        "priority": job.priority,
        "data": job.data_json or json_text(job.data),
        "max_attempts": job.max_attempts,
        "max_stalled": job.max_stalled,
        "lease": job.lease_seconds,
        "key": job.idempotency_key,
        "ttl": job.idempotency_ttl_seconds,
        "hash": job.payload_hash if job.idempotency_key else None,
        "delay": job.delay_seconds,
        "run_at": job.run_at,
        "created_by": job.created_by,
        "request_id": job.request_id,
        "trace": None if job.trace_context is None else json_text(job.trace_context),
        "replay_of": job.replay_of,
    }


def insert_params(jobs: Sequence[NewJob], ids: list[UUID], indexes: list[int]) -> dict[str, Any]:
    chosen = [jobs[i] for i in indexes]
    return {
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
