"""The dashboard's rules over HTTP (in-process, no browser), and the two API
operations it added: a job's history (GET /jobs/{id}/events) and the
operators' search (GET /queues/{name}/jobs/search)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import httpx

from queue_service.api.auth.principal import Role
from queue_service.api.dashboard import views as dashboard_views
from queue_service.api.dashboard.calls import guard_of
from queue_service.api.dashboard.session import SESSION_COOKIE, csrf_token
from queue_service.api.routes import dlq, jobs, queues
from tests.api.conftest import OTHER_TENANT, TENANT, Api, worker_running
from tests.support.waiting import eventually

ECHO = {"type": "test.echo", "data": {"value": "hello"}}


async def enqueue(api: Api, body: dict[str, Any], sub: str, *roles: Role) -> dict[str, Any]:
    response = await api.client.post("/jobs", json=body, headers=api.auth(sub, TENANT, *roles))
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def signed_in(api: Api, sub: str, *roles: Role, tenant: str = TENANT) -> httpx.AsyncClient:
    """A client of the same app carrying a dashboard session cookie."""
    client = httpx.AsyncClient(transport=api.transport, base_url=api.base_url)
    client.cookies.set(SESSION_COOKIE, api.token(sub, tenant, *roles), path="/dashboard")
    return client


async def test_a_job_s_history_is_visible_to_whoever_may_see_the_job(api: Api) -> None:
    job = await enqueue(api, ECHO, "alice", "user")
    async with worker_running(api):

        async def completed() -> bool:
            got = await api.client.get(
                f"/jobs/{job['id']}", headers=api.auth("alice", TENANT, "user")
            )
            return bool(got.json()["status"] == "completed")

        await eventually(completed, what="the job completes")
    own = await api.client.get(
        f"/jobs/{job['id']}/events", headers=api.auth("alice", TENANT, "user")
    )
    assert own.status_code == 200, own.text
    assert [e["event"] for e in own.json()["items"]][-1] == "completed"
    assert own.json()["trace_id"] is None  # tracing is off in the tests
    others: tuple[tuple[str, str, Role], ...] = (
        ("bob", TENANT, "user"),
        ("carol", OTHER_TENANT, "admin"),
    )
    for sub, tenant, role in others:
        other = await api.client.get(
            f"/jobs/{job['id']}/events", headers=api.auth(sub, tenant, role)
        )
        assert other.status_code == 404, (sub, other.text)


async def test_search_finds_a_tenant_s_jobs_by_type_or_idempotency_key_only(api: Api) -> None:
    keyed = await enqueue(api, {**ECHO, "idempotency_key": "order-77"}, "alice", "user")
    await enqueue(api, {"type": "test.fail", "data": {"mode": "permanent"}}, "alice", "user")
    admin = api.auth("ops", TENANT, "admin")
    by_key = await api.client.get("/queues/test/jobs/search?q=order-77", headers=admin)
    assert [j["id"] for j in by_key.json()["items"]] == [keyed["id"]]
    by_type = await api.client.get("/queues/test/jobs/search?q=test.echo", headers=admin)
    assert [j["id"] for j in by_type.json()["items"]] == [keyed["id"]]
    elsewhere = await api.client.get(
        "/queues/test/jobs/search?q=order-77", headers=api.auth("ops", OTHER_TENANT, "admin")
    )
    assert elsewhere.json()["items"] == []
    unknown = await api.client.get("/queues/nope/jobs/search?q=x", headers=admin)
    assert unknown.status_code == 404


def test_the_dashboard_reads_the_guard_each_api_route_declares() -> None:
    assert guard_of(jobs.get_job).roles == ("admin", "venue_admin", "user")
    assert guard_of(jobs.cancel_job).roles == ("admin", "venue_admin")
    assert guard_of(queues.pause).roles == ("admin",)
    assert guard_of(dlq.replay).group == "admin"


async def test_without_a_session_pages_lead_to_sign_in_and_actions_are_refused(
    api: Api,
) -> None:
    page = await api.client.get("/dashboard/queues/test")
    assert page.status_code == 303
    assert page.headers["location"] == "/dashboard/sign-in"
    action = await api.client.post("/dashboard/queues/test/pause", data={"csrf": "x"})
    assert action.status_code == 403
    assert "csrf" in action.text.lower()
    paused = await api.client.get("/queues", headers=api.auth("ops", TENANT, "admin"))
    assert not any(q["paused"] for q in paused.json()["items"])


async def test_a_user_gets_the_api_s_403_for_admin_pages_and_actions(api: Api) -> None:
    async with signed_in(api, "alice", "user") as client:
        page = await client.get("/dashboard/dlq")
        assert page.status_code == 403
        assert "this needs one of the roles admin" in page.text
        token = client.cookies[SESSION_COOKIE]
        action = await client.post("/dashboard/queues/test/pause", data={"csrf": csrf_token(token)})
        assert action.status_code == 403
    paused = await api.client.get("/queues", headers=api.auth("ops", TENANT, "admin"))
    assert not any(q["paused"] for q in paused.json()["items"])


async def test_a_user_s_queue_page_lists_only_its_own_jobs(api: Api) -> None:
    mine = await enqueue(api, {**ECHO, "delay_ms": 0}, "alice", "user")
    theirs = await enqueue(api, ECHO, "bob", "user")
    async with signed_in(api, "alice", "user") as client:
        page = await client.get("/dashboard/queues/test")
    assert page.status_code == 200
    assert mine["id"] in page.text
    assert theirs["id"] not in page.text


async def test_pages_name_only_this_server_s_assets(api: Api) -> None:
    async with signed_in(api, "ops", "admin") as client:
        page = await client.get("/dashboard/")
        assert page.status_code == 200
        assert "default-src 'none'" in page.headers["content-security-policy"]
        urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert urls and all(u.startswith(("/dashboard", "#", "data:")) for u in urls), urls
        for path in ("/dashboard/static/htmx.min.js", "/dashboard/static/dashboard.css"):
            asset = await client.get(path)
            assert asset.status_code == 200
            assert asset.headers["cache-control"] == "max-age=3600"
            assert asset.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"
        assert (await client.get("/dashboard/static/../app.py")).status_code == 404


def test_the_vendored_htmx_is_the_release_vendored_md_names() -> None:
    static = Path(dashboard_views.__file__).parent / "static"
    digest = hashlib.sha256((static / "htmx.min.js").read_bytes()).hexdigest()
    vendored = (static / "VENDORED.md").read_text("utf-8")
    assert "`htmx.min.js` | [htmx.org]" in vendored
    assert f"| 2.0.11 | 0BSD | `{digest}` |" in vendored
