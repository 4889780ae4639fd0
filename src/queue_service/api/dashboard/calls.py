"""The dashboard's one way to read or change anything: call the API's own
route handler, after the guard that route declares.

A page never reaches for the store. It calls the handler of the endpoint an
API client would call (``queues.pause``, ``dlq.replay``...) with the signed-in
principal, after checking the roles that handler's ``caller`` parameter
declares (``Admin``, ``AnyRole``...) and counting the call against the same
rate limits. Tenant scoping and ownership (a ``user`` sees only its jobs)
live inside the handlers, so a page cannot show more than the API would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any, TypeVar, get_type_hints

from fastapi.params import Depends

from queue_service.api.auth.principal import AuthError, Principal
from queue_service.api.problems import DOMAIN_STATUS, Problem
from queue_service.api.security import Guard
from queue_service.api.state import ApiState

T = TypeVar("T")


@cache
def guard_of(handler: Callable[..., Awaitable[Any]]) -> Guard:
    """The guard declared by ``handler``'s ``caller: Annotated[Principal, Depends(allow(...))]``."""
    hint = get_type_hints(handler, include_extras=True).get("caller")
    for meta in getattr(hint, "__metadata__", ()):
        guard = getattr(meta.dependency, "guard", None) if isinstance(meta, Depends) else None
        if isinstance(guard, Guard):
            return guard
    raise TypeError(f"{handler.__qualname__} declares no guarded caller parameter")


async def call(
    state: ApiState,
    caller: Principal,
    handler: Callable[..., Awaitable[T]],
    /,
    **arguments: Any,
) -> T:
    """``handler(caller=caller, state=state, **arguments)`` as the API runs it:
    the route's guard first, then the handler; the service's own errors become
    the Problem (status and detail) the API would answer with."""
    guard = guard_of(handler)
    guard.admit(caller)
    await guard.count(state, caller)
    try:
        return await handler(caller=caller, state=state, **arguments)
    except (Problem, AuthError):
        raise
    except tuple(DOMAIN_STATUS) as exc:
        status = next(DOMAIN_STATUS[c] for c in type(exc).__mro__ if c in DOMAIN_STATUS)
        raise Problem(status, str(exc)) from None
