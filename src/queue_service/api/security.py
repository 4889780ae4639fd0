"""Who is calling and what they may do: FastAPI dependencies.

A caller is a user (``Authorization: Bearer <JWT>``) or a platform service
(HMAC-signed ``x-internal-*`` headers, tenant in ``x-tenant-id``). Route
signatures read as types: ``caller: Admin``, ``scope: ...``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Request, Response

from queue_service.api.auth.principal import AuthError, Principal, Role
from queue_service.api.problems import Problem
from queue_service.api.ratelimit import Count
from queue_service.api.state import ApiState
from queue_service.core.signing import HEADER_SERVICE, signed_path
from queue_service.settings import Settings

# OpenAPI security schemes (declared on each guarded operation by the app's
# OpenAPI builder; the guard itself reads the headers, one dependency a
# request instead of four: FastAPI's dependency solving is a fifth of a
# request's CPU).
SECURITY_SCHEMES = {
    "BearerJWT": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT with exp, sub, tenant_id and roles (admin, venue_admin, user).",
    },
    "ServiceHMAC": {
        "type": "apiKey",
        "in": "header",
        "name": "x-internal-signature",
        "description": "Platform services: HMAC-SHA256 request signing with "
        "x-internal-service, x-internal-timestamp, x-internal-nonce, "
        "x-internal-body-hash and x-tenant-id.",
    },
}
RATE_WINDOW_SECONDS = 60
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
Group = Literal["enqueue", "read", "admin"]
GROUPS: tuple[Group, ...] = ("enqueue", "read", "admin")


async def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(api_state)]


async def authenticate(request: Request, state: ApiState) -> Principal:
    """The caller: a signed platform service, or the user of a bearer JWT."""
    headers = request.headers
    if HEADER_SERVICE in headers or "x-internal-signature" in headers:
        if state.hmac is None:
            raise AuthError("service authentication is not configured on this server")
        service = await state.hmac.verify(
            headers,
            request.method,
            signed_path(
                request.scope.get("raw_path") or request.url.path.encode(),
                request.scope.get("query_string", b""),
            ),
            await request.body(),
        )
        return Principal.for_service(service, headers.get("x-tenant-id"))
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("missing credentials: send Authorization: Bearer <JWT>")
    return state.jwt.verify(token.strip())


@dataclass(frozen=True, slots=True)
class Guard:
    """Who may call an operation and which rate-limit group it counts in.

    Each guarded route declares one (through :func:`allow`); the dashboard
    reads the same guard off the route's handler before calling it, so a
    page and the API endpoint behind it admit the same callers.
    """

    roles: tuple[Role, ...]
    service: bool
    group: Group

    def admit(self, caller: Principal) -> None:
        """Raise Problem(403) unless ``caller`` may call the operation."""
        if caller.is_service:
            if not self.service:
                raise Problem(403, "platform services may not call this endpoint")
        elif not caller.has_any_role(*self.roles):
            raise Problem(403, f"this needs one of the roles {', '.join(self.roles)}")

    async def count(self, state: ApiState, caller: Principal) -> dict[str, str]:
        """Count one call against the tenant's and the caller's limits (429
        when over); the RateLimit-* headers its answer carries."""
        return await _count(state, caller, self.group)

    async def authorize(self, request: Request) -> tuple[Principal, dict[str, str]]:
        """Who calls, admitted and counted: the caller and the RateLimit-*
        headers of the answer. Raises AuthError (401), Problem (403, 429)."""
        state: ApiState = request.app.state.api
        caller = await authenticate(request, state)
        self.admit(caller)
        return caller, await self.count(state, caller)


def allow(
    *roles: Role, service: bool = False, group: Group = "read"
) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting these roles (and services if ``service``),
    counting the request against the tenant's and the user's limits."""
    guard = Guard(roles, service, group)

    async def check(request: Request, response: Response) -> Principal:
        caller, headers = await guard.authorize(request)
        response.headers.update(headers)
        return caller

    return declare_guard(check, guard)


def declare_guard(target: F, guard: Guard) -> F:
    """Mark ``target`` (an ``allow`` dependency, or a handler that calls
    ``guard.authorize`` itself) with the guard it applies: the app's OpenAPI
    builder reads which schemes it accepts, the dashboard its rules."""
    target.openapi_security = [{"BearerJWT": []}] + (  # type: ignore[attr-defined]
        [{"ServiceHMAC": []}] if guard.service else []
    )
    target.guard = guard  # type: ignore[attr-defined]
    return target


def rate_limit_of(settings: Settings, key: str) -> int | None:
    """The limit of a window key: ``GROUP`` (the tenant) or ``GROUP:SUBJECT``."""
    group, _, subject = key.partition(":")
    if group not in GROUPS or (_ and not subject):
        return None
    tenant, caller = _limits(settings, group)
    return caller if subject else tenant


def _limits(settings: Settings, group: Group) -> tuple[int, int]:
    """A group's limits per window: the tenant's, and one caller's share of it."""
    limit = (
        settings.queue_service_rate_limit_enqueue_per_minute
        if group == "enqueue"
        else settings.queue_service_rate_limit_read_per_minute
    )
    return limit, max(1, int(limit * settings.queue_service_rate_limit_user_share))


async def _count(state: ApiState, caller: Principal, group: Group) -> dict[str, str]:
    windows = await state.limiter.hit(
        caller.tenant_id, [group, f"{group}:{caller.subject}"], _limits(state.settings, group)
    )
    tenant, own = windows
    tightest = tenant if tenant.limit - tenant.count <= own.limit - own.count else own
    reset = max(1, round(tightest.seconds_left))
    headers = {
        "RateLimit-Limit": str(tightest.limit),
        "RateLimit-Remaining": str(max(0, tightest.limit - tightest.count)),
        "RateLimit-Reset": str(reset),
    }
    if tenant.count <= tenant.limit and own.count <= own.limit:
        return headers
    over = [w for w in windows if w.count > w.limit]
    raise Problem(
        429,
        "; ".join(_exceeded(state.settings, caller, w, reset) for w in over),
        headers={**headers, "Retry-After": str(reset)},
        extensions={
            "rate_limit": [
                {
                    "scope": _scope_of(caller, w.key),
                    "key": w.key,
                    "group": group,
                    "limit": w.limit,
                    "window_seconds": RATE_WINDOW_SECONDS,
                    "retry_after": reset,
                }
                for w in over
            ]
        },
    )


def _scope_of(caller: Principal, key: str) -> str:
    """Whose window a key is: the tenant's, or the caller's share of it."""
    if ":" not in key:
        return "tenant"
    return "service" if caller.is_service else "user"


def _exceeded(settings: Settings, caller: Principal, window: Count, retry_after: int) -> str:
    """A 429's detail: which window, whose, its limit and when to retry."""
    group = window.key.partition(":")[0]
    per = f"{window.limit} {group} requests per {RATE_WINDOW_SECONDS} s"
    if ":" not in window.key:
        who = f"tenant {caller.tenant_id!r} (all its users and services together)"
    else:
        share = settings.queue_service_rate_limit_user_share
        whose = _scope_of(caller, window.key)
        who = f"{whose} {caller.subject!r} (a {share:g} share of the tenant's)"
    return (
        f"rate limit exceeded for bucket {window.key!r}: {who} may make {per};"
        f" retry after {retry_after} s"
    )


AnyRole = Annotated[Principal, Depends(allow("admin", "venue_admin", "user"))]
BatchEnqueuer = Annotated[Principal, Depends(allow("admin", service=True, group="enqueue"))]
Admin = Annotated[Principal, Depends(allow("admin", group="admin"))]
Canceller = Annotated[Principal, Depends(allow("admin", "venue_admin", group="admin"))]


def sees_all_of_tenant(caller: Principal) -> bool:
    """admin and venue_admin see the tenant's jobs; a user only its own."""
    return caller.has_any_role("admin", "venue_admin")
