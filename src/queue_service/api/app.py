"""The FastAPI application: middleware, problem handlers, routes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from queue_service.api import dashboard
from queue_service.api.bodylimit import BodyLimitMiddleware
from queue_service.api.direct import DirectRoutes
from queue_service.api.docs import install_docs
from queue_service.api.problems import install_problem_handlers
from queue_service.api.requestid import RequestIdMiddleware
from queue_service.api.routes import (
    alerts,
    dlq,
    health,
    jobs,
    metrics,
    queues,
    rate_limits,
    schedules,
)
from queue_service.api.security import SECURITY_SCHEMES
from queue_service.api.state import ApiState
from queue_service.observability.tracing import instrument_app

DESCRIPTION = """The durable job queue of the ticketing platform.

Users authenticate with `Authorization: Bearer <JWT>`; platform services sign
requests with HMAC-SHA256 (`x-internal-*` headers) and name their tenant in
`x-tenant-id`. Every error is `application/problem+json` (RFC 9457). Every
response carries `x-request-id`.
"""


def create_app(state: ApiState) -> FastAPI:
    app = FastAPI(
        title="queue-service",
        version="0.1.0",
        description=DESCRIPTION,
        # FastAPI's own telemetry would trace whenever any global provider is
        # set, and its logs export rejected bodies as sent: off (decision 0015).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Served from vendored files instead of a CDN (api/docs.py).
        docs_url=None,
        redoc_url=None,
    )
    app.state.api = state
    install_problem_handlers(app)
    install_docs(app)
    routers = (
        jobs.router,
        queues.router,
        alerts.router,
        dlq.router,
        schedules.router,
        rate_limits.router,
        health.router,
        metrics.router,
    )
    for router in routers:
        app.include_router(router)
    # The operators' pages (not in the OpenAPI document): /dashboard.
    app.include_router(dashboard.router)
    # Innermost: POST /jobs straight to its handler, inside the request id and
    # the body limit, answered by the app's own exception handlers (decision 0027).
    app.add_middleware(
        DirectRoutes,
        routes={("POST", "/jobs"): jobs.enqueue},
        error_handlers=app.exception_handlers,
    )
    # Added last = outermost: every response, a 413 included, gets its id.
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestIdMiddleware)
    # With tracing on, a span per request around all of it (outermost).
    instrument_app(app)
    routes = [r for router in routers for r in router.routes if isinstance(r, APIRoute)]
    app.openapi = lambda: _openapi(app, routes)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI, routes: list[APIRoute]) -> dict[str, Any]:
    """FastAPI's document plus the security each guarded operation accepts."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for route in routes:
        # A guard is declared by a dependency (allow), or by a direct route's
        # handler itself (api/direct.py).
        declared = [route.endpoint, *(d.call for d in route.dependant.dependencies)]
        security = next(
            (
                getattr(call, "openapi_security", None)
                for call in declared
                if getattr(call, "openapi_security", None)
            ),
            None,
        )
        if security is None:
            continue
        for method in route.methods or ():
            schema["paths"][route.path_format][method.lower()]["security"] = security
    app.openapi_schema = schema
    return schema
