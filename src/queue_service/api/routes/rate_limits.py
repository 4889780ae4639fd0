"""/rate-limits: the caller's tenant's inbound request windows, and the
outbound services' shared buckets, emergency stops and breakers (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path

from queue_service.api.auth.principal import Principal
from queue_service.api.problems import ERROR_RESPONSES, Problem
from queue_service.api.schemas import BreakerOut, OutboundLimitOut, RateLimitOut, StopBody
from queue_service.api.security import RATE_WINDOW_SECONDS, Admin, State, rate_limit_of
from queue_service.api.state import ApiState
from queue_service.runtime.outbound import read_states
from queue_service.store import Store
from queue_service.store.outbound import OutboundState
from queue_service.store.ratelimits import RateLimitStore

router = APIRouter(tags=["rate limits"], responses=ERROR_RESPONSES)
KeyPath = Path(min_length=1, max_length=300, examples=["enqueue", "enqueue:user-1", "stripe"])
LimitOut = RateLimitOut | OutboundLimitOut


@router.get(
    "/rate-limits/status/{key}",
    response_model=LimitOut,
    summary="A limit's state: enqueue, read, admin, GROUP:SUBJECT, or an outbound service",
)
async def status(caller: Admin, state: State, key: str = KeyPath) -> LimitOut:
    if key in state.settings.outbound_limits:
        return await _outbound_status(state, key)
    limit = rate_limit_of(state.settings, key)
    if limit is None:
        raise Problem(404, _unknown(state, key))
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
    "/rate-limits/reset/{key}",
    response_model=LimitOut,
    summary="Start a window afresh; for an outbound service, refill its bucket, "
    "end an emergency stop and close its breaker",
)
async def reset(caller: Admin, state: State, key: str = KeyPath) -> LimitOut:
    if key in state.settings.outbound_limits:
        _platform_operator(state, caller)
        store = await _configured(state, key)
        await store.outbound_reset(key)
        return await _outbound_status(state, key)
    limit = rate_limit_of(state.settings, key)
    if limit is None:
        raise Problem(404, _unknown(state, key))
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


@router.post(
    "/rate-limits/stop/{key}",
    response_model=OutboundLimitOut,
    summary="Emergency stop of an outbound service: every job calling it snoozes until a reset",
)
async def stop(
    caller: Admin,
    state: State,
    key: str = KeyPath,
    body: Annotated[StopBody | None, Body()] = None,
) -> OutboundLimitOut:
    if key not in state.settings.outbound_limits:
        raise Problem(
            404,
            f"no outbound service {key!r}; services are "
            f"{', '.join(sorted(state.settings.outbound_limits))}",
        )
    _platform_operator(state, caller)
    store = await _configured(state, key)
    await store.outbound_stop(key, _who(caller), body.reason if body else None)
    return await _outbound_status(state, key)


def _platform_operator(state: ApiState, caller: Principal) -> None:
    """An outbound bucket is every tenant's: stopping or resetting it is for
    the platform's operators, not any tenant's admin."""
    if caller.tenant_id not in state.settings.platform_operator_tenants:
        raise Problem(
            403,
            "outbound limits are shared by every tenant: stop or reset them with"
            " `queue-service rate-limits`, or as an admin of a tenant listed in"
            " QUEUE_SERVICE_PLATFORM_OPERATOR_TENANTS",
        )


def _unknown(state: ApiState, key: str) -> str:
    return (
        f"no rate limit {key!r}; keys are enqueue, read, admin, or one of them followed "
        f"by :SUBJECT, or an outbound service ({', '.join(sorted(state.settings.outbound_limits))})"
    )


def _who(caller: Principal) -> str:
    return f"{caller.subject} (tenant {caller.tenant_id})"


async def _configured(state: ApiState, service: str) -> Store:
    """The store as the API role, with the service's row made from this
    process's configuration if no worker has called the service yet."""
    store = Store(state.db)
    await store.outbound_configure(
        service, state.settings.outbound_limits[service], state.settings.breaker_policy
    )
    return store


async def _outbound_status(state: ApiState, service: str) -> OutboundLimitOut:
    settings = state.settings
    (found,) = await read_states(
        Store(state.db), settings.outbound_limits, settings.breaker_policy, service
    )
    return _outbound_out(found)


def _outbound_out(s: OutboundState) -> OutboundLimitOut:
    return OutboundLimitOut(
        key=s.service,
        kind="outbound",
        size=s.size,
        refill_per_second=s.refill_per_second,
        tokens=round(s.tokens, 3),
        reserved=s.reserved,
        reserved_until=s.reserved_until,
        max_in_flight=s.max_in_flight,
        in_flight=s.in_flight,
        stopped=s.stopped_at is not None,
        stopped_at=s.stopped_at,
        stopped_by=s.stopped_by,
        stop_reason=s.stop_reason,
        breaker=BreakerOut(
            state=s.breaker_state,
            consecutive_failures=s.consecutive_failures,
            failures_to_open=s.breaker_failures,
            open_seconds=s.breaker_open_seconds,
            opened_at=s.opened_at,
            half_open_at=s.half_open_at,
            last_failure=s.last_failure,
        ),
    )
