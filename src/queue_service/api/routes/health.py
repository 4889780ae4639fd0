"""Probes: live (the process answers, no database), ready (the database and
every configured provider answer; stand-ins named as such), startup
(migrations ran and, in serve, workers started)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from queue_service.api.schemas import Health
from queue_service.api.security import State

router = APIRouter(tags=["health"])
READY_TIMEOUT_SECONDS = 2.0


@router.get("/health/live", response_model=Health)
async def live() -> Health:
    return Health(status="ok")


@router.get(
    "/health/ready",
    response_model=Health,
    responses={503: {"model": Health, "description": "Not ready"}},
)
async def ready(state: State) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(state.runtime.store.db_now(), READY_TIMEOUT_SECONDS)
        checks["database"] = "ok"
    except Exception as exc:  # any failure is "not ready", with its reason
        checks["database"] = f"unavailable: {type(exc).__name__}"
    checks.update(state.notes)
    # What serves each kind of outside work, development stand-ins named as
    # such; configured ones probed (cached, so readiness polls cannot hammer them).
    providers = await state.providers().check()
    for result in providers:
        checks[f"provider.{result.status.kind}"] = result.describe()
    ok = checks["database"] == "ok" and not any(r.failing for r in providers)
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/health/startup",
    response_model=Health,
    responses={503: {"model": Health, "description": "Still starting"}},
)
async def startup(state: State) -> JSONResponse:
    body = Health(
        status="ok" if state.started else "unavailable",
        checks={"started": str(state.started).lower()},
    )
    return JSONResponse(body.model_dump(), status_code=200 if state.started else 503)
