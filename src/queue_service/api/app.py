"""The FastAPI application: middleware, problem handlers, routes."""

from __future__ import annotations

from fastapi import FastAPI

from queue_service.api.bodylimit import BodyLimitMiddleware
from queue_service.api.problems import install_problem_handlers
from queue_service.api.requestid import RequestIdMiddleware
from queue_service.api.routes import dlq, health, jobs, queues, rate_limits
from queue_service.api.state import ApiState

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
    )
    app.state.api = state
    install_problem_handlers(app)
    for router in (jobs.router, queues.router, dlq.router, rate_limits.router, health.router):
        app.include_router(router)
    # Added last = outermost: every response, a 413 included, gets its id.
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app
