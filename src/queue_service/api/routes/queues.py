"""/queues: true counts, status with samples, listings, pause/resume/clear.

Everything is the caller's tenant's: a pause pauses that tenant's jobs in
the queue on every worker; an operator's pause of a whole queue shows as
paused and only the CLI lifts it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from queue_service.api.cursors import decode_cursor, encode_cursor
from queue_service.api.problems import ERROR_RESPONSES
from queue_service.api.routes.jobs import job_out
from queue_service.api.schemas import (
    ClearOut,
    Counts,
    JobList,
    JobStatusName,
    QueueList,
    QueueOut,
    QueueStatus,
)
from queue_service.api.security import Admin, AnyRole, State
from queue_service.api.state import Scope
from queue_service.core.jobs import Job, JobStatus
from queue_service.store.admin import QueueCounts

router = APIRouter(tags=["queues"], responses=ERROR_RESPONSES)
SAMPLE = 5


async def _paused(scope: Scope) -> set[str]:
    """Queues paused for the caller's tenant (or all), from one statement."""
    return {q for q, _, _, _ in await scope.store.paused_queues()}


async def _queue_out(
    scope: Scope,
    name: str,
    counts: dict[str, QueueCounts] | None = None,
    paused: set[str] | None = None,
) -> QueueOut:
    # Callers listing several queues pass counts and pauses read once for all.
    if counts is None:
        counts = await scope.store.queue_counts(scope.principal.tenant_id)
    if paused is None:
        paused = await _paused(scope)
    c = counts.get(name, QueueCounts(name))
    return QueueOut(
        name=name,
        paused=name in paused,
        counts=Counts(**c.counts()),
        oldest_waiting_age_seconds=c.oldest_waiting_age_seconds,
    )


def _known(state: State, name: str) -> None:
    state.runtime.registry.queue(name)  # UnknownQueueError -> 404 with a suggestion


@router.get("/queues", response_model=QueueList, summary="Every queue with its counts")
async def list_queues(caller: AnyRole, state: State) -> QueueList:
    async with state.scope(caller) as scope:
        counts = await scope.store.queue_counts(caller.tenant_id)
        paused = await _paused(scope)
        names = [q.name for q in state.runtime.registry.queues]
        return QueueList(items=[await _queue_out(scope, n, counts, paused) for n in names])


@router.get(
    "/queues/{name}/status",
    response_model=QueueStatus,
    summary="Counts, oldest waiting age and sample jobs",
)
async def queue_status(name: str, caller: AnyRole, state: State) -> QueueStatus:
    _known(state, name)
    registry = state.runtime.registry
    async with state.scope(caller) as scope:
        base = await _queue_out(scope, name)
        samples: list[Job] = []
        for status in (JobStatus.ACTIVE, JobStatus.WAITING):
            page = await scope.store.list_jobs(name, caller.tenant_id, status, SAMPLE)
            samples += [
                job
                for job in page
                if caller.has_any_role("admin", "venue_admin") or job.created_by == caller.subject
            ]
    return QueueStatus(
        **base.model_dump(),
        concurrency=registry.queue(name).concurrency,
        job_types=registry.types_in_queue(name),
        sample_jobs=[job_out(j) for j in samples],
    )


def _encode_cursor(job: Job, status: JobStatus) -> str:
    at = (
        job.run_at
        if status in (JobStatus.WAITING, JobStatus.DELAYED, JobStatus.ACTIVE)
        else job.finished_at
    )
    assert at is not None
    return encode_cursor(at, job.id)


@router.get(
    "/queues/{name}/jobs",
    response_model=JobList,
    summary="Jobs of a queue by status, keyset-paginated",
)
async def list_jobs(
    name: str,
    caller: Admin,
    state: State,
    status: Annotated[JobStatusName, Query()] = "waiting",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JobList:
    _known(state, name)
    wanted = JobStatus(status)
    after = decode_cursor(cursor) if cursor else None
    async with state.scope(caller) as scope:
        page = await scope.store.list_jobs(name, caller.tenant_id, wanted, limit + 1, after)
    jobs = page[:limit]
    more = len(page) > limit
    return JobList(
        items=[job_out(j) for j in jobs],
        next_cursor=_encode_cursor(jobs[-1], wanted) if more else None,
    )


@router.get(
    "/queues/{name}/jobs/search",
    response_model=JobList,
    summary="Jobs of a queue whose type or idempotency key is q (live, then finished)",
)
async def search_jobs(
    name: str,
    caller: Admin,
    state: State,
    q: Annotated[str, Query(min_length=1, max_length=255)],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobList:
    _known(state, name)
    async with state.scope(caller) as scope:
        found = await scope.store.search_jobs(name, caller.tenant_id, q, limit)
    return JobList(items=[job_out(j) for j in found[:limit]], next_cursor=None)


@router.post(
    "/queues/{name}/pause",
    response_model=QueueOut,
    summary="Stop new pick-ups of this tenant's jobs on every worker",
)
async def pause(name: str, caller: Admin, state: State) -> QueueOut:
    _known(state, name)
    async with state.scope(caller) as scope:
        await scope.store.pause_queue(name, caller.tenant_id, caller.subject)
        return await _queue_out(scope, name)


@router.post("/queues/{name}/resume", response_model=QueueOut, summary="Lift this tenant's pause")
async def resume(name: str, caller: Admin, state: State) -> QueueOut:
    _known(state, name)
    async with state.scope(caller) as scope:
        await scope.store.resume_queue(name, caller.tenant_id)
        return await _queue_out(scope, name)


@router.post(
    "/queues/{name}/clear",
    response_model=ClearOut,
    summary="Cancel every waiting and delayed job of this tenant in the queue",
)
async def clear(name: str, caller: Admin, state: State) -> ClearOut:
    _known(state, name)
    async with state.scope(caller) as scope:
        n = await scope.store.clear_queue(name, caller.tenant_id, caller.subject)
    return ClearOut(queue=name, cancelled=n)
