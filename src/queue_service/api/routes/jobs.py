"""/jobs: enqueue (one or a batch), read, retry, cancel."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from fastapi import APIRouter, Request, Response

from queue_service.api.auth.principal import Principal
from queue_service.api.direct import json_body, request_body_schema
from queue_service.api.problems import ERROR_RESPONSES, Problem
from queue_service.api.requestid import current_request_id
from queue_service.api.schemas import (
    BatchBody,
    BatchOut,
    EnqueueBody,
    JobEventList,
    JobEventOut,
    JobOut,
)
from queue_service.api.security import (
    Admin,
    AnyRole,
    BatchEnqueuer,
    Canceller,
    Guard,
    State,
    declare_guard,
    sees_all_of_tenant,
)
from queue_service.api.state import ApiState, Scope
from queue_service.core.jobs import Job
from queue_service.errors import EnqueueError, IdempotencyConflictError
from queue_service.observability.tracing import current_trace_context, trace_id_of
from queue_service.processors.registry import UnknownQueueError
from queue_service.runtime.manager import EnqueueRequest, JobManager
from queue_service.store import Store

router = APIRouter(tags=["jobs"], responses=ERROR_RESPONSES)
REPLAYED = "Idempotent-Replayed"


def job_out(job: Job) -> JobOut:
    # Read off the record's attributes: no ISO strings made and parsed back.
    return JobOut.model_validate(job, from_attributes=True)


def _request(
    body: EnqueueBody, caller: Principal, trace_context: dict[str, str] | None
) -> EnqueueRequest:
    return EnqueueRequest(
        type=body.type,
        data=body.data,
        tenant_id=caller.tenant_id,
        queue=body.queue,
        priority=body.priority,
        idempotency_key=body.idempotency_key,
        run_at=body.run_at,
        delay_ms=body.delay_ms,
        max_attempts=body.max_attempts,
        created_by=caller.subject,
        request_id=current_request_id(),
        # The request's span, which the job's attempts are children of.
        trace_context=trace_context,
    )


@contextmanager
def _batch_errors(manager: JobManager, body: BatchBody, caller: Principal) -> Iterator[None]:
    """A batch is refused whole at its first bad job; the problem then names
    every bad job by index (each is validated again, on this error path only,
    so a good batch pays nothing for it)."""
    try:
        yield
    except IdempotencyConflictError as exc:
        errors = [
            {"index": i, "field": "idempotency_key", "detail": str(exc)}
            for i, job in enumerate(body.jobs)
            if job.idempotency_key == exc.key
        ]
        raise Problem(409, str(exc), extensions={"errors": errors}) from None
    except (EnqueueError, UnknownQueueError) as exc:
        errors = []
        for i, job in enumerate(body.jobs):
            try:
                manager.build(_request(job, caller, None))
            except UnknownQueueError as bad:
                errors.append({"index": i, "field": "queue", "detail": str(bad)})
            except EnqueueError as bad:
                errors.append({"index": i, "field": bad.field or "body", "detail": str(bad)})
        if not errors:
            raise Problem(422, str(exc)) from None
        named = "; ".join(f"jobs[{e['index']}].{e['field']}: {e['detail']}" for e in errors[:5])
        more = f"; and {len(errors) - 5} more (see errors)" if len(errors) > 5 else ""
        raise Problem(
            422,
            f"{len(errors)} of {len(body.jobs)} jobs are invalid, none was enqueued: {named}{more}",
            extensions={"errors": errors},
        ) from None


@contextmanager
def _body_errors() -> Iterator[None]:
    """An unknown queue named in a body is a bad body (422), not a missing resource (404)."""
    try:
        yield
    except UnknownQueueError as exc:
        raise Problem(422, str(exc)) from None


async def visible_job(scope: Scope, job_id: UUID) -> Job:
    """The job if the caller may see it; 404 otherwise (never 403: SPEC §6)."""
    job = await scope.store.get_job(job_id, scope.principal.tenant_id)
    if job is None or not (
        sees_all_of_tenant(scope.principal) or job.created_by == scope.principal.subject
    ):
        raise Problem(404, f"no job {job_id}")
    return job


# POST /jobs is a direct route (api/direct.py): the app hands it the request
# before the router, and it applies its guard and body model itself.
ENQUEUE = Guard(("admin", "venue_admin", "user"), service=True, group="enqueue")


@router.post(
    "/jobs",
    status_code=201,
    response_model=JobOut,
    summary="Enqueue one job",
    responses={
        200: {
            "model": JobOut,
            "description": "Idempotent replay: the existing job (header Idempotent-Replayed: true)",
        }
    },
    openapi_extra=request_body_schema(EnqueueBody),
)
async def enqueue(request: Request) -> Response:
    caller, headers = await ENQUEUE.authorize(request)
    body = await json_body(request, EnqueueBody)
    state: ApiState = request.app.state.api
    with _body_errors():
        new_job = state.runtime.manager.build(_request(body, caller, current_trace_context()))
    # One statement (job_insert, the one insert rule), scoped to the caller's
    # tenant: a new job, or the job its idempotency key names, or a conflict.
    done = await Store(state.db).insert_one_as_tenant(new_job, caller.tenant_id)
    if isinstance(done, IdempotencyConflictError):
        raise done
    if done.created:
        assert done.job is not None  # job_insert answers with what it inserted
        return _job_response(done.job, 201, headers)
    async with state.scope(caller) as scope:
        job = await _replayed(scope, done.job_id, body)
    return _job_response(job, 200, {**headers, REPLAYED: "true"})


declare_guard(enqueue, ENQUEUE)


def _job_response(job: Job, status: int, headers: dict[str, str]) -> Response:
    """``job`` as its response model serialises it (what FastAPI would send)."""
    return Response(job_out(job).model_dump_json(), status, headers, "application/json")


async def _replayed(scope: Scope, job_id: UUID, body: EnqueueBody) -> Job:
    job = await scope.store.get_job(job_id, scope.principal.tenant_id)
    caller = scope.principal
    if job is None or not (
        caller.is_service or sees_all_of_tenant(caller) or job.created_by == caller.subject
    ):
        # Another user's job: say the key is taken, show nothing of the job.
        raise Problem(409, f"idempotency key {body.idempotency_key!r} is already in use")
    return job


@router.post(
    "/jobs/batch",
    status_code=201,
    response_model=BatchOut,
    summary="Enqueue up to 100 jobs, all or none",
)
async def enqueue_batch(body: BatchBody, caller: BatchEnqueuer, state: State) -> BatchOut:
    async with state.scope(caller) as scope:
        with _batch_errors(scope.manager, body, caller):
            traced = current_trace_context()
            done = await scope.manager.enqueue_many(
                [_request(j, caller, traced) for j in body.jobs]
            )
        found = await scope.store.get_jobs([d.job_id for d in done], caller.tenant_id)
    return BatchOut(jobs=[job_out(found[d.job_id]) for d in done if d.job_id in found])


@router.get("/jobs/{job_id}", response_model=JobOut, summary="A job (users: their own)")
async def get_job(job_id: UUID, caller: AnyRole, state: State) -> JobOut:
    async with state.scope(caller) as scope:
        return job_out(await visible_job(scope, job_id))


@router.get(
    "/jobs/{job_id}/events",
    response_model=JobEventList,
    summary="A job's history, oldest first (users: their own jobs)",
)
async def job_events(job_id: UUID, caller: AnyRole, state: State) -> JobEventList:
    async with state.scope(caller) as scope:
        await visible_job(scope, job_id)
        events = await scope.store.job_events(job_id)
        traced = await scope.store.job_trace_context(job_id, caller.tenant_id)
    return JobEventList(
        items=[JobEventOut.model_validate(e, from_attributes=True) for e in events],
        trace_id=trace_id_of(traced),
    )


@router.post(
    "/jobs/{job_id}/retry", response_model=JobOut, summary="Re-run a failed or cancelled job"
)
async def retry_job(job_id: UUID, caller: Admin, state: State) -> JobOut:
    async with state.scope(caller) as scope:
        await visible_job(scope, job_id)
        await scope.manager.retry(job_id, caller.tenant_id, caller.subject)
        return job_out(await visible_job(scope, job_id))


@router.delete(
    "/jobs/{job_id}",
    response_model=JobOut,
    summary="Cancel a waiting or delayed job (an active one is asked to stop)",
)
async def cancel_job(job_id: UUID, caller: Canceller, state: State) -> JobOut:
    async with state.scope(caller) as scope:
        await visible_job(scope, job_id)
        await scope.manager.cancel(job_id, caller.tenant_id, f"cancelled by {caller.subject}")
        return job_out(await visible_job(scope, job_id))
