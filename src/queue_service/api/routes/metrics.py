"""/metrics (Prometheus text, optional bearer METRICS_TOKEN) and /metrics/json
(the same figures for dashboards, scoped to the caller's tenant unless the
caller administers a platform operator tenant)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from queue_service.api.auth.principal import Principal
from queue_service.api.problems import ERROR_RESPONSES, Problem
from queue_service.api.security import AnyRole, State
from queue_service.api.state import ApiState
from queue_service.core.base58 import short_address
from queue_service.runtime.gauges import (
    CONTENT_TYPE,
    Gauges,
    QueueGauges,
    process_json,
    read_queue_gauges,
    render,
)
from queue_service.runtime.metrics_server import bearer_matches
from queue_service.store.metrics import MetricSnapshot

router = APIRouter(tags=["metrics"])
HISTORY_SECONDS = 3600


class QueueFigures(BaseModel):
    queue: str
    waiting: int
    delayed: int
    active: int
    oldest_waiting_age_seconds: float | None
    dead_letters: int


class MinuteFigures(BaseModel):
    """One minute's snapshot of a queue; the rates are of the minute before ``at``."""

    at: datetime
    queue: str
    waiting: int
    delayed: int
    active: int
    completed: int
    failed: int
    cancelled: int
    completed_per_second: float
    failed_per_second: float
    oldest_waiting_age_seconds: float | None


class OutboundFigures(BaseModel):
    service: str
    tokens: float
    capacity: float
    in_flight: int
    max_in_flight: int
    breaker_state: str
    stopped: bool


class WalletFigures(BaseModel):
    wallet: str
    balance_sol: float
    minimum_sol: float
    observed_at: datetime


class MetricsJson(BaseModel):
    scope: Literal["platform", "tenant"]
    tenant_id: str | None
    queues: list[QueueFigures]
    history: list[MinuteFigures]
    outbound: list[OutboundFigures]
    wallets: list[WalletFigures]
    # This process's counters and histograms (every tenant's work mixed):
    # the platform's view only.
    process: dict[str, Any] | None


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format 0.0.4"},
        **{k: v for k, v in ERROR_RESPONSES.items() if k in (401, 503)},
    },
)
async def metrics(request: Request, state: State) -> Response:
    token = state.settings.metrics_token
    if token is not None and not bearer_matches(
        request.headers.get("authorization"), token.get_secret_value()
    ):
        raise Problem(
            401,
            "send Authorization: Bearer <METRICS_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    reading = await state.runtime.gauges.read()
    # Rendering is CPU only (7 ms measured for ~30 queue/type pairs): off the loop.
    return Response(await asyncio.to_thread(render, reading), media_type=CONTENT_TYPE)


@router.get(
    "/metrics/json",
    response_model=MetricsJson,
    summary="The same figures as JSON, with the last hour per minute",
    responses=ERROR_RESPONSES,
)
async def metrics_json(caller: AnyRole, state: State) -> MetricsJson:
    reading = await state.runtime.gauges.read()
    if _platform(state, caller):
        history = await state.runtime.store.metric_history(HISTORY_SECONDS)
        return _figures("platform", None, reading, history, reading, process_json())
    names = [q.name for q in state.runtime.registry.queues]
    async with state.scope(caller) as scope:
        queues = await read_queue_gauges(scope.store, names, caller.tenant_id)
        history = await scope.store.metric_history(HISTORY_SECONDS, caller.tenant_id)
    return _figures("tenant", caller.tenant_id, queues, history, reading, None)


def _platform(state: ApiState, caller: Principal) -> bool:
    return caller.has_any_role("admin") and (
        caller.tenant_id in state.settings.platform_operator_tenants
    )


def _figures(
    scope: Literal["platform", "tenant"],
    tenant: str | None,
    queues: QueueGauges,
    history: list[MetricSnapshot],
    shared: Gauges,
    process: dict[str, Any] | None,
) -> MetricsJson:
    return MetricsJson(
        scope=scope,
        tenant_id=tenant,
        queues=[
            QueueFigures(
                queue=q.queue,
                waiting=q.waiting,
                delayed=q.delayed,
                active=q.active,
                oldest_waiting_age_seconds=q.oldest_waiting_age_seconds,
                dead_letters=queues.dead_letters.get(q.queue, 0),
            )
            for q in queues.queues
        ],
        history=[
            MinuteFigures(
                **{f: getattr(m, f) for f in MetricSnapshot.__dataclass_fields__},
                completed_per_second=m.completed / 60,
                failed_per_second=m.failed / 60,
            )
            for m in history
        ],
        # Buckets and breakers are shared by every tenant and explain their
        # snoozes; the wallet and the process counters are the platform's.
        outbound=[
            OutboundFigures(
                service=s.service,
                tokens=s.tokens,
                capacity=s.size,
                in_flight=s.in_flight,
                max_in_flight=s.max_in_flight,
                breaker_state=s.breaker_state,
                stopped=s.stopped_at is not None,
            )
            for s in shared.outbound
        ],
        wallets=[]
        if process is None
        else [
            WalletFigures(
                wallet=short_address(w.address),
                balance_sol=float(w.balance_sol),
                minimum_sol=float(w.minimum_sol),
                observed_at=w.observed_at,
            )
            for w in shared.wallets
        ],
        process=process,
    )
