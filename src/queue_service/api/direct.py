"""Direct routes: the hottest endpoint, ``POST /jobs``, handed straight to its
handler instead of through FastAPI's router, dependency solving and response
validation.

At 64 connections on one ``api`` process those layers were over a third of
an enqueue's CPU (decision 0027). A direct route stays an ordinary FastAPI
route: it is in the OpenAPI document, the router would serve it the same way
without this middleware, and its handler takes only the ``Request``. The
handler does what FastAPI would have done for it with the same parts: the
route's :class:`~queue_service.api.security.Guard` (``authorize``), the same
pydantic model (:func:`json_body`, FastAPI's parsing rules and error shape)
and a response serialised from the response model. Its errors are answered
by the app's own exception handlers, looked up as Starlette looks them up, so
a direct route's 4xx bodies are the ones every other route gives.

The middleware sits inside the request-id and body-limit middlewares: a
direct request still gets its ``x-request-id`` and the 413 for an oversized
body, and is still traced when tracing is on (that middleware is outermost).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Any]
M = TypeVar("M", bound=BaseModel)


class DirectRoutes:
    """Serve ``(method, path)`` in ``routes`` by calling its handler directly;
    everything else goes on to the app. ``error_handlers`` is the app's own
    map of exception class (or status) to handler, read at each error."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[tuple[str, str], Handler],
        error_handlers: Mapping[Any, ErrorHandler],
    ) -> None:
        self.app = app
        self.routes = dict(routes)
        self.error_handlers = error_handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = (
            self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if handler is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await handler(request)
        except ClientDisconnect:
            return  # gone before its body arrived: nothing was written, no one to answer
        except Exception as exc:
            on_error = self._handler_of(exc)
            if on_error is None:
                raise  # the app's 500 handler answers, outermost, as for any route
            answer = on_error(request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)

    def _handler_of(self, exc: Exception) -> ErrorHandler | None:
        """The most specific handler of ``exc``'s class, as Starlette's
        ExceptionMiddleware picks it; ``Exception`` itself is the server-error
        handler's, which runs outermost."""
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            if cls in self.error_handlers:
                return self.error_handlers[cls]
        return None


async def json_body(request: Request, model: type[M]) -> M:
    """The request body as ``model``, by FastAPI's rules for a declared body
    parameter and with its errors (located under ``body``), so the app's
    validation handler answers as for any route: 400 for malformed JSON, 415
    for a body of another media type, 422 naming each bad field."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    if not _is_json(request.headers.get("content-type", "")):
        raise RequestValidationError(
            [
                {
                    "type": "model_attributes_type",
                    "loc": ("body",),
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                    "input": raw,
                }
            ]
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


def _is_json(content_type: str) -> bool:
    """``application/json`` or ``application/*+json``, parameters ignored;
    no Content-Type is not JSON (FastAPI's strict content type)."""
    media = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def request_body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as a direct route's JSON body
    (the handler reads it itself, so FastAPI cannot infer it)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }
