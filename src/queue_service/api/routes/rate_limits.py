"""/rate-limits: the caller's tenant's inbound request windows (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Path

from queue_service.api.problems import ERROR_RESPONSES, Problem
from queue_service.api.schemas import RateLimitOut
from queue_service.api.security import RATE_WINDOW_SECONDS, Admin, State, rate_limit_of
from queue_service.store.ratelimits import RateLimitStore

router = APIRouter(tags=["rate limits"], responses=ERROR_RESPONSES)
KeyPath = Path(min_length=1, max_length=300, examples=["enqueue", "enqueue:user-1"])


@router.get(
    "/rate-limits/status/{key}",
    response_model=RateLimitOut,
    summary="A window's state: enqueue, read, admin, or GROUP:SUBJECT for one caller",
)
async def status(caller: Admin, state: State, key: str = KeyPath) -> RateLimitOut:
    limit = rate_limit_of(state.settings, key)
    if limit is None:
        raise Problem(
            404,
            f"no rate limit {key!r}; keys are enqueue, read, admin, "
            "or one of them followed by :SUBJECT",
        )
    async with state.db.tenant_transaction(caller.tenant_id) as bound:
        window = await RateLimitStore(bound).get(caller.tenant_id, key)
    count = window.count if window else 0
    return RateLimitOut(
        key=key,
        kind="inbound",
        limit=limit,
        window_seconds=RATE_WINDOW_SECONDS,
        current_count=count,
        remaining=max(0, limit - count),
        reset_at=window.reset_at if window else None,
    )


@router.post(
    "/rate-limits/reset/{key}", response_model=RateLimitOut, summary="Start a window afresh"
)
async def reset(caller: Admin, state: State, key: str = KeyPath) -> RateLimitOut:
    limit = rate_limit_of(state.settings, key)
    if limit is None:
        raise Problem(404, f"no rate limit {key!r}")
    async with state.db.tenant_transaction(caller.tenant_id) as bound:
        await RateLimitStore(bound).reset(caller.tenant_id, key)
    state.limiter.forget(caller.tenant_id, key)
    return RateLimitOut(
        key=key,
        kind="inbound",
        limit=limit,
        window_seconds=RATE_WINDOW_SECONDS,
        current_count=0,
        remaining=limit,
        reset_at=None,
    )
