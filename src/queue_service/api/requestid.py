"""Request ids: taken from ``x-request-id`` when well-formed, else made;
echoed on every response and carried into jobs and logs."""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

import structlog
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
_WELL_FORMED = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HEADER = b"x-request-id"


def current_request_id() -> str | None:
    return _REQUEST_ID.get()


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER, b"").decode("latin-1")
        request_id = given if _WELL_FORMED.match(given) else secrets.token_hex(16)
        token = _REQUEST_ID.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        # The request's span (tracing on; a no-op otherwise) carries the id too.
        trace.get_current_span().set_attribute("queue_service.request.id", request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != HEADER]
                headers.append((HEADER, request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
            _REQUEST_ID.reset(token)
