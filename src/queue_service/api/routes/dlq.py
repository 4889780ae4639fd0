"""/dlq: dead letters of the caller's tenant (admin): list, read, replay,
delete, and replay in bulk with a dry run."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from queue_service.api.cursors import decode_cursor, encode_cursor
from queue_service.api.problems import ERROR_RESPONSES, Problem
from queue_service.api.routes.jobs import job_out
from queue_service.api.schemas import (
    BulkReplayBody,
    BulkReplayOut,
    DeadLetterList,
    DeadLetterOut,
    ReplayOut,
)
from queue_service.api.security import Admin, State
from queue_service.api.state import Scope
from queue_service.errors import InvalidStateError
from queue_service.store.admin import DeadLetter

router = APIRouter(tags=["dead letters"], responses=ERROR_RESPONSES)


def _out(entry: DeadLetter) -> DeadLetterOut:
    return DeadLetterOut.model_validate(entry, from_attributes=True)


@router.get("/dlq", response_model=DeadLetterList, summary="Dead letters, newest first")
async def list_dead_letters(
    caller: Admin,
    state: State,
    queue: Annotated[str | None, Query(max_length=100)] = None,
    type: Annotated[str | None, Query(max_length=100)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
    failed_after: Annotated[datetime | None, Query()] = None,
    failed_before: Annotated[datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DeadLetterList:
    async with state.scope(caller) as scope:
        entries = await scope.store.list_dead_letters(
            caller.tenant_id,
            limit + 1,
            queue=queue,
            job_type=type,
            error_contains=error,
            failed_after=failed_after,
            failed_before=failed_before,
            before=decode_cursor(cursor) if cursor else None,
        )
    page = entries[:limit]
    return DeadLetterList(
        items=[_out(e) for e in page],
        next_cursor=encode_cursor(page[-1].failed_at, page[-1].id)
        if len(entries) > limit
        else None,
    )


async def _entry(scope: Scope, dlq_id: UUID) -> DeadLetter:
    entry = await scope.store.get_dead_letter(dlq_id, scope.principal.tenant_id)
    if entry is None:
        raise Problem(404, f"no dead letter {dlq_id}")
    return entry


@router.get("/dlq/{dlq_id}", response_model=DeadLetterOut, summary="One dead letter")
async def get_dead_letter(dlq_id: UUID, caller: Admin, state: State) -> DeadLetterOut:
    async with state.scope(caller) as scope:
        return _out(await _entry(scope, dlq_id))


async def _replay(scope: Scope, dlq_id: UUID) -> ReplayOut:
    job_id = await scope.manager.replay_dead_letter(
        dlq_id, scope.principal.tenant_id, scope.principal.subject
    )
    job = await scope.store.get_job(job_id, scope.principal.tenant_id)
    assert job is not None
    return ReplayOut(dead_letter_id=dlq_id, job=job_out(job))


@router.post(
    "/dlq/{dlq_id}/replay",
    response_model=ReplayOut,
    status_code=201,
    summary="Replay as a new job linked to the entry (once)",
)
async def replay(dlq_id: UUID, caller: Admin, state: State) -> ReplayOut:
    async with state.scope(caller) as scope:
        await _entry(scope, dlq_id)
        return await _replay(scope, dlq_id)


@router.delete("/dlq/{dlq_id}", response_model=DeadLetterOut, summary="Delete a dead letter")
async def delete(dlq_id: UUID, caller: Admin, state: State) -> DeadLetterOut:
    async with state.scope(caller) as scope:
        entry = await _entry(scope, dlq_id)
        await scope.store.delete_dead_letter(dlq_id, caller.tenant_id)
    return _out(entry)


@router.post(
    "/dlq/replay",
    response_model=BulkReplayOut,
    summary="Replay every matching dead letter not yet replayed (dry run by default)",
)
async def bulk_replay(body: BulkReplayBody, caller: Admin, state: State) -> BulkReplayOut:
    async with state.scope(caller) as scope:
        entries = await scope.store.list_dead_letters(
            caller.tenant_id,
            body.limit,
            queue=body.queue,
            job_type=body.type,
            error_contains=body.error_contains,
            failed_after=body.failed_after,
            failed_before=body.failed_before,
            unreplayed_only=True,
        )
        replayed: list[ReplayOut] = []
        skipped = 0
        if not body.dry_run:
            for entry in entries:
                try:
                    replayed.append(await _replay(scope, entry.id))
                except InvalidStateError:
                    skipped += 1  # replayed by someone else meanwhile
    return BulkReplayOut(
        dry_run=body.dry_run,
        matched=len(entries),
        replayed=replayed,
        skipped_already_replayed=skipped,
    )
