"""Signing in to the dashboard: the JWT in a cookie, and the CSRF token bound to it.

The session is the caller's JWT itself, kept in an HttpOnly, SameSite=Strict
cookie scoped to /dashboard: scripts cannot read it and other sites' pages
cannot send it. Every action also carries a CSRF token, HMAC-SHA256 keyed by
that JWT: a page of the dashboard can print it, a forger cannot compute it
(the key is the cookie it cannot read), and it needs no server-side state, so
any API process checks any other's. Sign-in has a short-lived cookie of its
own compared with the form's copy (login CSRF).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import parse_qsl, urlsplit

from fastapi import Request, Response

from queue_service.api.auth.principal import AuthError, Principal
from queue_service.api.problems import Problem
from queue_service.api.state import ApiState

PREFIX = "/dashboard"
SESSION_COOKIE = "qs_dashboard_session"
SIGN_IN_COOKIE = "qs_dashboard_sign_in"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
MAX_FORM_BYTES = 64 * 1024
# Browsers keep cookies of up to about 4 kB: a longer token would be dropped
# silently and the sign-in would seem to do nothing.
MAX_SESSION_BYTES = 3900
_CSRF_PURPOSE = b"queue-service dashboard csrf v1"


def csrf_token(session: str) -> str:
    """The CSRF token of a session: derived from the JWT, so it dies with it."""
    return hmac.new(session.encode(), _CSRF_PURPOSE, hashlib.sha256).hexdigest()


def session_of(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


def principal_of(request: Request, state: ApiState) -> Principal:
    """The signed-in caller; AuthError (to the sign-in page) without a valid session."""
    token = session_of(request)
    if token is None:
        raise AuthError("sign in to use the dashboard")
    return state.jwt.verify(token)


async def read_form(request: Request) -> dict[str, str]:
    """A url-encoded form (the dashboard's only body); the last value of a repeated name."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Problem(413, "the form is too large")
    if body and media != "application/x-www-form-urlencoded":
        raise Problem(415, "the dashboard accepts url-encoded forms only")
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False))
    except (UnicodeDecodeError, ValueError):
        raise Problem(400, "the form is not valid url-encoded text") from None


def _same_origin(request: Request) -> None:
    """A browser names the page a POST came from; refuse another site's."""
    origin = request.headers.get("origin")
    if origin is None:  # not a browser, or an old one: the token decides
        return
    # The host only: behind a TLS-terminating proxy this server may see http
    # while the browser names https.
    if origin == "null" or urlsplit(origin).netloc != request.headers.get("host", ""):
        raise Problem(403, "cross-site request refused (Origin does not match this server)")


def check_csrf(request: Request, form: dict[str, str]) -> None:
    """Every action: same origin, and the session's CSRF token in the form or header."""
    _same_origin(request)
    session = session_of(request)
    sent = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if session is None or not hmac.compare_digest(sent.encode(), csrf_token(session).encode()):
        raise Problem(403, "missing or wrong CSRF token: reload the page and try again")


def new_sign_in_nonce(response: Response, request: Request) -> str:
    nonce = secrets.token_urlsafe(24)
    _cookie(response, request, SIGN_IN_COOKIE, nonce, max_age=1800)
    return nonce


def check_sign_in_nonce(request: Request, form: dict[str, str]) -> None:
    _same_origin(request)
    cookie = request.cookies.get(SIGN_IN_COOKIE, "")
    sent = form.get(CSRF_FIELD, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise Problem(403, "the sign-in form expired or was not sent by this page: reload it")


def start_session(response: Response, request: Request, token: str) -> None:
    if len(token.encode()) > MAX_SESSION_BYTES:
        raise Problem(
            422,
            f"this token is {len(token.encode())} bytes: a browser keeps cookies of at most"
            f" about 4 kB, so the dashboard takes tokens of up to {MAX_SESSION_BYTES} bytes",
        )
    _cookie(response, request, SESSION_COOKIE, token, max_age=None)
    response.delete_cookie(SIGN_IN_COOKIE, path=PREFIX)


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict")


def _cookie(
    response: Response, request: Request, name: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
