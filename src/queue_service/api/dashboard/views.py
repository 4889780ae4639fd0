"""/dashboard: the operators' web pages, server-rendered, refreshed by htmx.

Every read and every action goes through :func:`calls.call` to the API
route handler that does the same thing, so the pages obey the API's roles,
tenant scoping and ownership rules by construction. GET pages are safe;
every POST checks the CSRF token of the session, then redirects (303) back.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode
from uuid import UUID
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from queue_service.api.auth.principal import AuthError, Principal
from queue_service.api.auth.tokens import mint_token
from queue_service.api.dashboard import session
from queue_service.api.dashboard.calls import call
from queue_service.api.dashboard.render import STATIC_DIR, render, sparkline, when
from queue_service.api.problems import TITLES, Problem
from queue_service.api.routes import alerts as alert_routes
from queue_service.api.routes import dlq as dlq_routes
from queue_service.api.routes import jobs as job_routes
from queue_service.api.routes import metrics as metric_routes
from queue_service.api.routes import queues as queue_routes
from queue_service.api.routes import rate_limits as limit_routes
from queue_service.api.routes import schedules as schedule_routes
from queue_service.api.schemas import BulkReplayBody, JobOut, StopBody
from queue_service.api.state import ApiState, dev_secret
from queue_service.core.cron import CronError, CronSpec

PREFIX: Final = session.PREFIX
PAGE_SIZE: Final = 25
OVERVIEW_REFRESH_SECONDS: Final = 3
JOB_REFRESH_SECONDS: Final = 1
STATUSES: Final = ("waiting", "delayed", "active", "completed", "failed", "cancelled")
LIVE: Final = frozenset({"waiting", "delayed", "active"})
DEV_SUBJECT: Final = "dashboard-dev"
FILTERS: Final = ("queue", "type", "error", "failed_after", "failed_before")
STATIC_FILES: Final = {"htmx.min.js", "dashboard.css", "dashboard.js"}
# Fixed texts for the notice a redirect names (never text taken from the URL).
NOTICES: Final = {
    "paused": "Queue paused.",
    "resumed": "Queue resumed.",
    "cleared": "Queue cleared: its waiting and delayed jobs are cancelled.",
    "retried": "Job queued to run again.",
    "cancelled": "Job cancelled (an active job is asked to stop).",
    "replayed": "Dead letter replayed as a new job.",
    "deleted": "Dead letter deleted.",
    "acknowledged": "Alert acknowledged.",
    "stopped": "Emergency stop set: jobs calling the service snooze until a reset.",
    "reset": "Limit reset.",
}
# Headers of every dashboard page: nothing but this server's own assets.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class DashboardRoute(APIRoute):
    """A route whose failures are pages: sign-in for a missing session, an
    error page with the API's status and detail for a Problem."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                response = await handler(request)
            except AuthError as exc:
                if request.headers.get("hx-request"):
                    # A refresh after the session ended: htmx loads the sign-in
                    # page (a 2xx, or the browser logs the 401 as an error).
                    response = Response(headers={"HX-Redirect": f"{PREFIX}/sign-in"})
                elif request.method == "GET":
                    return _redirect(f"{PREFIX}/sign-in")
                else:
                    response = _error_page(request, exc.status, exc.detail)
            except Problem as exc:
                response = _error_page(request, exc.status, exc.detail)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)  # static files keep their caching
            return response

        return guarded


router = APIRouter(prefix=PREFIX, route_class=DashboardRoute, include_in_schema=False)


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    token = session.session_of(request)
    context = {
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "caller": None,
        "csrf": session.csrf_token(token) if token else "",
        "is_admin": False,
        "nav": "",
        "notice": None,
        "dev_sign_in": False,
    }
    return HTMLResponse(render("error.html", context), status_code=status)


def _page(
    request: Request, caller: Principal, template: str, nav: str, **context: Any
) -> HTMLResponse:
    token = session.session_of(request) or ""
    notice = NOTICES.get(request.query_params.get("done", ""))
    return HTMLResponse(
        render(
            template,
            {
                "caller": caller,
                "csrf": session.csrf_token(token),
                "is_admin": caller.has_any_role("admin"),
                "nav": nav,
                "notice": notice,
                "dev_sign_in": False,
                **context,
            },
        )
    )


async def _action(request: Request) -> tuple[ApiState, Principal, dict[str, str]]:
    """A POST: the session's caller and form, once its CSRF token checks out."""
    state = _state(request)
    form = await session.read_form(request)
    session.check_csrf(request, form)
    return state, session.principal_of(request, state), form


# -- static files and sign-in ------------------------------------------------


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in STATIC_FILES:
        raise Problem(404, f"no file {name}")
    return FileResponse(STATIC_DIR / name, headers={"Cache-Control": "max-age=3600"})


def _can_mint(state: ApiState) -> bool:
    """One-click sign-in: development mode with an HS256 key this process knows."""
    return state.settings.is_development and state.jwt.algorithm == "HS256"


def _dev_tenant(state: ApiState) -> str:
    return min(state.settings.platform_operator_tenants, default="demo")


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    state = _state(request)
    response = HTMLResponse("")
    nonce = session.new_sign_in_nonce(response, request)
    response.body = render(
        "sign_in.html",
        {
            "caller": None,
            "csrf": nonce,
            "is_admin": False,
            "nav": "sign-in",
            "notice": None,
            "dev_sign_in": _can_mint(state),
            "dev_tenant": _dev_tenant(state),
        },
    ).encode()
    response.headers["content-length"] = str(len(response.body))
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    state = _state(request)
    form = await session.read_form(request)
    session.check_sign_in_nonce(request, form)
    token = form.get("token", "").strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    state.jwt.verify(token)  # AuthError: the page says what was wrong
    response = _redirect(f"{PREFIX}/")
    session.start_session(response, request, token)
    return response


@router.post("/sign-in/dev")
async def sign_in_dev(request: Request) -> Response:
    state = _state(request)
    form = await session.read_form(request)
    session.check_sign_in_nonce(request, form)
    if not _can_mint(state):
        raise Problem(404, "one-click sign-in exists in development mode only")
    settings = state.settings
    secret = (
        settings.jwt_secret.get_secret_value()
        if settings.jwt_secret
        else dev_secret(settings.data_dir)
    )
    token = mint_token(
        secret,
        subject=DEV_SUBJECT,
        tenant_id=form.get("tenant", "").strip() or _dev_tenant(state),
        roles=["admin"],
        ttl_seconds=8 * 3600,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    state.jwt.verify(token)
    response = _redirect(f"{PREFIX}/")
    session.start_session(response, request, token)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    form = await session.read_form(request)
    session.check_csrf(request, form)
    response = _redirect(f"{PREFIX}/sign-in")
    session.end_session(response)
    return response


# -- overview -----------------------------------------------------------------


def _minutes(now: datetime, count: int = 60) -> list[datetime]:
    """The last ``count`` whole minutes, oldest first (a snapshot's ``at``)."""
    last = now.astimezone(UTC).replace(second=0, microsecond=0)
    return [last - timedelta(minutes=count - 1 - i) for i in range(count)]


async def _overview(state: ApiState, caller: Principal) -> dict[str, Any]:
    queues = await call(state, caller, queue_routes.list_queues)
    figures = await call(state, caller, metric_routes.metrics_json)
    # queue -> minute -> [completed, failed]; the platform's view has a row
    # per tenant (added up), and an idle minute has no row at all (a zero).
    done: dict[str, dict[datetime, list[int]]] = defaultdict(dict)
    for m in figures.history:
        slot = done[m.queue].setdefault(m.at.astimezone(UTC), [0, 0])
        slot[0] += m.completed
        slot[1] += m.failed
    # Up to the newest snapshot: the current minute has none until the leader's next.
    latest = max((m.at for m in figures.history), default=datetime.now(UTC))
    minutes = _minutes(latest)
    rows = []
    for q in queues.items:
        seen = done.get(q.name)
        series = [seen.get(at, [0, 0]) for at in minutes] if seen else []
        throughput = [c / 60 for c, _ in series]
        failure = [f / (c + f) if c + f else 0.0 for c, f in series]
        rows.append(
            {
                "queue": q,
                "throughput": sparkline(throughput),
                "failure": sparkline(failure),
                "throughput_now": throughput[-1] if throughput else None,
                "failure_now": failure[-1] if failure else None,
            }
        )
    return {"rows": rows, "refresh": OVERVIEW_REFRESH_SECONDS, "scope": figures.scope}


@router.get("/")
async def overview(request: Request) -> Response:
    state = _state(request)
    caller = session.principal_of(request, state)
    return _page(request, caller, "overview.html", "overview", **await _overview(state, caller))


@router.get("/fragments/overview")
async def overview_fragment(request: Request) -> Response:
    state = _state(request)
    caller = session.principal_of(request, state)
    context = {"caller": caller, **await _overview(state, caller)}
    return HTMLResponse(render("_overview_table.html", context))


# -- queues and jobs ------------------------------------------------------------


@router.get("/queues/{name}")
async def queue_page(request: Request, name: str) -> Response:
    state = _state(request)
    caller = session.principal_of(request, state)
    params = request.query_params
    search = params.get("q", "").strip()
    if search:
        try:
            return _redirect(f"{PREFIX}/jobs/{UUID(search)}")
        except ValueError:
            pass
    wanted = params.get("status", "waiting")
    if wanted not in STATUSES:
        raise Problem(422, f"status must be one of {', '.join(STATUSES)}")
    status = await call(state, caller, queue_routes.queue_status, name=name)
    jobs: list[JobOut] | None = None
    next_cursor = None
    found: list[JobOut] | None = None
    if search:
        found = (await call(state, caller, queue_routes.search_jobs, name=name, q=search)).items
    elif caller.has_any_role("admin"):
        page = await call(
            state,
            caller,
            queue_routes.list_jobs,
            name=name,
            status=wanted,
            limit=PAGE_SIZE,
            cursor=params.get("cursor") or None,
        )
        jobs, next_cursor = page.items, page.next_cursor
    return _page(
        request,
        caller,
        "queue.html",
        "overview",
        status=status,
        statuses=STATUSES,
        wanted=wanted,
        jobs=jobs,
        found=found,
        search=search,
        next_url=f"?{urlencode({'status': wanted, 'cursor': next_cursor})}"
        if next_cursor
        else None,
        first_url=f"?{urlencode({'status': wanted})}" if params.get("cursor") else None,
    )


@router.post("/queues/{name}/{action}")
async def queue_action(request: Request, name: str, action: str) -> Response:
    state, caller, _ = await _action(request)
    handlers = {
        "pause": (queue_routes.pause, "paused"),
        "resume": (queue_routes.resume, "resumed"),
        "clear": (queue_routes.clear, "cleared"),
    }
    if action not in handlers:
        raise Problem(404, f"no queue action {action!r}")
    handler, done = handlers[action]
    await call(state, caller, handler, name=name)
    return _redirect(f"{PREFIX}/queues/{name}?done={done}")


async def _job(state: ApiState, caller: Principal, job_id: UUID) -> dict[str, Any]:
    job = await call(state, caller, job_routes.get_job, job_id=job_id)
    events = await call(state, caller, job_routes.job_events, job_id=job_id)
    return {
        "job": job,
        "events": events.items,
        "trace_id": events.trace_id,
        "live": job.status in LIVE,
        "refresh": JOB_REFRESH_SECONDS,
        "can_retry": caller.has_any_role("admin") and job.status in ("failed", "cancelled"),
        "can_cancel": caller.has_any_role("admin", "venue_admin") and job.status in LIVE,
    }


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: UUID) -> Response:
    state = _state(request)
    caller = session.principal_of(request, state)
    return _page(request, caller, "job.html", "overview", **await _job(state, caller, job_id))


@router.get("/fragments/jobs/{job_id}")
async def job_fragment(request: Request, job_id: UUID) -> Response:
    state = _state(request)
    caller = session.principal_of(request, state)
    token = session.session_of(request) or ""
    context = {"caller": caller, "csrf": session.csrf_token(token)}
    return HTMLResponse(render("_job_live.html", {**context, **await _job(state, caller, job_id)}))


@router.post("/jobs/{job_id}/retry")
async def job_retry(request: Request, job_id: UUID) -> Response:
    state, caller, _ = await _action(request)
    await call(state, caller, job_routes.retry_job, job_id=job_id)
    return _redirect(f"{PREFIX}/jobs/{job_id}?done=retried")


@router.post("/jobs/{job_id}/cancel")
async def job_cancel(request: Request, job_id: UUID) -> Response:
    state, caller, _ = await _action(request)
    await call(state, caller, job_routes.cancel_job, job_id=job_id)
    return _redirect(f"{PREFIX}/jobs/{job_id}?done=cancelled")


# -- dead letters -----------------------------------------------------------------


def _utc(text: str | None) -> datetime | None:
    """A datetime-local field's value, read as UTC."""
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise Problem(422, f"{text!r} is not a date and time (YYYY-MM-DDTHH:MM)") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _dlq_filters(values: dict[str, str]) -> dict[str, Any]:
    return {
        "queue": values.get("queue") or None,
        "type": values.get("type") or None,
        "error": values.get("error") or None,
        "failed_after": _utc(values.get("failed_after")),
        "failed_before": _utc(values.get("failed_before")),
    }


async def _dlq_page(
    request: Request, state: ApiState, caller: Principal, values: dict[str, str], **extra: Any
) -> Response:
    filters = _dlq_filters(values)
    page = await call(
        state,
        caller,
        dlq_routes.list_dead_letters,
        limit=PAGE_SIZE,
        cursor=values.get("cursor") or None,
        **filters,
    )
    shown = {k: values.get(k, "") for k in FILTERS}
    kept = {k: v for k, v in shown.items() if v}
    return _page(
        request,
        caller,
        "dlq.html",
        "dlq",
        entries=page.items,
        filters=shown,
        queues=[q.name for q in state.runtime.registry.queues],
        next_url=f"?{urlencode({**kept, 'cursor': page.next_cursor})}"
        if page.next_cursor
        else None,
        **extra,
    )


@router.get("/dlq")
async def dlq_page(request: Request) -> Response:
    state = _state(request)
    caller = session.principal_of(request, state)
    values = {k: request.query_params.get(k, "") for k in (*FILTERS, "cursor")}
    return await _dlq_page(request, state, caller, values, bulk=None)


@router.post("/dlq/replay")
async def dlq_bulk_replay(request: Request) -> Response:
    state, caller, form = await _action(request)
    filters = _dlq_filters(form)
    body = BulkReplayBody(
        queue=filters["queue"],
        type=filters["type"],
        error_contains=filters["error"],
        failed_after=filters["failed_after"],
        failed_before=filters["failed_before"],
        dry_run=form.get("mode") != "replay",
    )
    result = await call(state, caller, dlq_routes.bulk_replay, body=body)
    values = {k: form.get(k, "") for k in FILTERS}
    return await _dlq_page(request, state, caller, values | {"cursor": ""}, bulk=result)


@router.post("/dlq/{dlq_id}/replay")
async def dlq_replay(request: Request, dlq_id: UUID) -> Response:
    state, caller, _ = await _action(request)
    replayed = await call(state, caller, dlq_routes.replay, dlq_id=dlq_id)
    return _redirect(f"{PREFIX}/jobs/{replayed.job.id}?done=replayed")


@router.post("/dlq/{dlq_id}/delete")
async def dlq_delete(request: Request, dlq_id: UUID) -> Response:
    state, caller, _ = await _action(request)
    await call(state, caller, dlq_routes.delete, dlq_id=dlq_id)
    return _redirect(f"{PREFIX}/dlq?done=deleted")


# -- alerts, rate limits, schedules ---------------------------------------------


@router.get("/alerts")
async def alerts_page(request: Request) -> Response:
    state = _state(request)
    caller = session.principal_of(request, state)
    alerts = await call(state, caller, alert_routes.list_alerts, limit=50)
    operator = caller.tenant_id in state.settings.platform_operator_tenants
    return _page(
        request,
        caller,
        "alerts.html",
        "alerts",
        alerts=alerts.items,
        can_acknowledge=operator and caller.has_any_role("admin"),
    )


@router.post("/alerts/{alert_id}/acknowledge")
async def alert_acknowledge(request: Request, alert_id: UUID) -> Response:
    state, caller, _ = await _action(request)
    await call(state, caller, alert_routes.acknowledge, alert_id=alert_id)
    return _redirect(f"{PREFIX}/alerts?done=acknowledged")


@router.get("/rate-limits")
async def rate_limits_page(request: Request) -> Response:
    state = _state(request)
    caller = session.principal_of(request, state)
    services = [
        await call(state, caller, limit_routes.status, key=key)
        for key in sorted(state.settings.outbound_limits)
    ]
    inbound = [
        await call(state, caller, limit_routes.status, key=key) for key in ("enqueue", "read")
    ]
    operator = caller.tenant_id in state.settings.platform_operator_tenants
    return _page(
        request,
        caller,
        "rate_limits.html",
        "rate-limits",
        services=services,
        inbound=inbound,
        operator=operator,
    )


@router.post("/rate-limits/{key}/{action}")
async def rate_limit_action(request: Request, key: str, action: str) -> Response:
    state, caller, form = await _action(request)
    if action == "stop":
        reason = form.get("reason", "").strip()[:500] or None
        await call(state, caller, limit_routes.stop, key=key, body=StopBody(reason=reason))
        return _redirect(f"{PREFIX}/rate-limits?done=stopped")
    if action == "reset":
        await call(state, caller, limit_routes.reset, key=key)
        return _redirect(f"{PREFIX}/rate-limits?done=reset")
    raise Problem(404, f"no rate-limit action {action!r}")


def _next_fires(cron: str, timezone: str, first: datetime | None, count: int = 3) -> list[str]:
    """The next fire times in the schedule's zone, each with its UTC time."""
    if first is None:
        return []
    try:
        spec = CronSpec.parse(cron, timezone)
        zone = ZoneInfo(timezone)
    except (CronError, ValueError, KeyError):
        return [when(first)]
    return [
        f"{at.astimezone(zone):%Y-%m-%d %H:%M} {timezone} ({at.astimezone(UTC):%H:%M} UTC)"
        for at in [first, *itertools.islice(spec.ticks_after(first), count - 1)]
    ]


@router.get("/schedules")
async def schedules_page(request: Request) -> Response:
    state = _state(request)
    caller = session.principal_of(request, state)
    found = await call(state, caller, schedule_routes.list_schedules, limit=200)
    rows = [
        {"schedule": s, "next": _next_fires(s.cron, s.timezone, s.next_run_at)} for s in found.items
    ]
    return _page(request, caller, "schedules.html", "schedules", rows=rows)


@router.get("")
async def root() -> Response:
    return _redirect(f"{PREFIX}/")
