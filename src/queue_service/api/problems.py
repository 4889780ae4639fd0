"""One error shape for every failure: RFC 9457 ``application/problem+json``."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from queue_service.api.auth.principal import AuthError
from queue_service.api.requestid import current_request_id
from queue_service.errors import (
    EnqueueError,
    IdempotencyConflictError,
    InvalidStateError,
    JobNotFoundError,
)
from queue_service.processors.registry import UnknownQueueError
from queue_service.store.errors import PoolWaitTimeout, UnstorableValueError, is_transient

log = structlog.get_logger("queue_service.api")
PROBLEM_JSON = "application/problem+json"
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class FieldProblem(BaseModel):
    """One bad value: ``index`` is the job's position in a batch's ``jobs``."""

    index: int | None = None
    field: str
    detail: str


class ExceededLimit(BaseModel):
    """The request-rate window a 429 ran into."""

    scope: str  # "tenant", or "user" / "service": the caller's share of it
    key: str
    group: str
    limit: int
    window_seconds: int
    retry_after: int


class ProblemModel(BaseModel):
    """RFC 9457 problem details (the OpenAPI schema of every error)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    # Extension members (RFC 9457 §3.2), present when they apply.
    errors: list[FieldProblem] | None = None
    rate_limit: list[ExceededLimit] | None = None


class Problem(Exception):
    """Raise to answer with a problem; ``headers`` ride along (Retry-After...),
    ``extensions`` are extra members of the body (``errors``, ``rate_limit``)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        type_: str = "about:blank",
        extensions: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.type = type_
        self.extensions = extensions or {}


def problem_response(
    status: int,
    detail: str,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    type_: str = "about:blank",
    extensions: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": type_,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "request_id": current_request_id(),
    }
    if request is not None:
        body["instance"] = request.url.path
    if extensions:
        body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


# Every error status the API can answer, for OpenAPI (schemathesis checks them).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemModel, "description": TITLES[status], "content": {PROBLEM_JSON: {}}}
    for status in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
}


# The service's own errors and the status each answers with. IdempotencyConflictError
# is an EnqueueError: Starlette picks the handler of the most specific class.
DOMAIN_STATUS: dict[type[Exception], int] = {
    JobNotFoundError: 404,
    UnknownQueueError: 404,
    IdempotencyConflictError: 409,
    InvalidStateError: 409,
    EnqueueError: 422,
}


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    errors = exc.errors()
    for err in errors[:10]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg")))
    if len(errors) > 10:
        parts.append(f"and {len(errors) - 10} more (see errors)")
    return "; ".join(parts) or "invalid request"


def field_problems(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Every validation error as an ``errors`` item; a batch job's position
    (``body.jobs.3.priority``) becomes its ``index``, so all bad jobs are named."""
    items = []
    for err in exc.errors():
        loc = [p for p in err.get("loc", ()) if p != "body"]
        item: dict[str, Any] = {}
        if len(loc) >= 2 and loc[0] == "jobs" and isinstance(loc[1], int):
            item["index"] = loc[1]
            loc = loc[2:]
        item["field"] = ".".join(str(p) for p in loc) or "body"
        item["detail"] = str(err.get("msg", "invalid"))
        items.append(item)
    return items


def _body_not_json(request: Request, exc: RequestValidationError) -> bool:
    """A body sent, but not as JSON (``curl -d`` sends a form): FastAPI then
    validates the raw bytes and says only "Input should be a valid dictionary"."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return False
    return any(
        tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing" for e in exc.errors()
    )


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status, exc.detail, request, exc.headers, exc.type, exc.extensions
        )

    @app.exception_handler(AuthError)
    async def on_auth(request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return problem_response(exc.status, exc.detail, request, headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return problem_response(400, "the body is not valid JSON", request)
        if _body_not_json(request, exc):
            return problem_response(
                415, "the body must be JSON: send it with Content-Type: application/json", request
            )
        return problem_response(
            422,
            _validation_detail(exc),
            request,
            extensions={"errors": field_problems(exc)},
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail), request, dict(exc.headers or {}))

    async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
        status = next(DOMAIN_STATUS[c] for c in type(exc).__mro__ if c in DOMAIN_STATUS)
        field = exc.field if isinstance(exc, EnqueueError) else None
        extensions = {"errors": [{"field": field, "detail": str(exc)}]} if field else None
        return problem_response(status, str(exc), request, extensions=extensions)

    for error_class in DOMAIN_STATUS:
        app.add_exception_handler(error_class, on_domain_error)

    @app.exception_handler(UnstorableValueError)
    async def on_unstorable(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(
            422,
            "a value in the request cannot be stored: NUL characters (\\u0000) "
            "and out-of-range values are refused",
            request,
        )

    @app.exception_handler(PoolWaitTimeout)
    async def on_pool_wait(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PoolWaitTimeout)
        log.warning(
            "no pooled connection came free in time; answered 503",
            path=request.url.path,
            pool=exc.pool,
            pool_size=exc.max_size,
            waited_seconds=exc.timeout,
        )
        return problem_response(503, pool_wait_detail(exc), request, {"Retry-After": "2"})

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_transient(exc):
            return problem_response(
                503, "the database is unavailable; retry shortly", request, {"Retry-After": "2"}
            )
        log.exception("unhandled error", path=request.url.path)
        return problem_response(500, "internal error; it has been logged", request)


def pool_wait_detail(exc: PoolWaitTimeout) -> str:
    """What a 503 for a pool wait says: the wait and the pool's size, each
    with the setting an operator would tune (docs/operations.md#connections)."""
    wait = f"{exc.timeout:g} s"
    if exc.timeout_setting:
        wait += f" ({exc.timeout_setting})"
    return (
        f"no database connection came free within {wait}: all {exc.max_size} connections"
        f" of the {exc.pool!r} pool (QUEUE_SERVICE_POOL_SIZE) stayed busy, or the database"
        " could not be reached; retry shortly"
    )
