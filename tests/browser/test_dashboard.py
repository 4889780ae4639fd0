"""The dashboard in a real browser: Debian's Chromium driven by Playwright.

One API server (with a worker) and one browser for the module; each test
gets a fresh browser context (its own cookies). Screenshots of every page go
to $DASHBOARD_SCREENSHOTS (default: a temporary directory); with
DASHBOARD_UPDATE_DOCS=1 the overview's also replaces docs/img/dashboard-overview.png.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest

from queue_service.api.app import create_app
from queue_service.api.auth.principal import Role
from queue_service.api.auth.tokens import mint_token
from queue_service.api.server import serve_http
from queue_service.api.state import build_api_state
from queue_service.errors import PermanentError
from queue_service.processors.base import Payload, processor
from queue_service.processors.context import JobContext
from queue_service.runtime.service import Runtime, open_runtime
from queue_service.runtime.worker import Worker
from queue_service.store.databases import drop_database_on, url_for_database
from tests.api.conftest import JWT_SECRET, TENANT, free_port, make_api_settings
from tests.support.processors import LEDGER_DDL, PROCESSORS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
DOCS_SCREENSHOT = ROOT / "docs" / "img" / "dashboard-overview.png"
T = TypeVar("T")

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev extra")
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: `python3 dev.py test` installs Debian's chromium "
        "(apt-get, as root or with sudo); it could not here",
        allow_module_level=True,
    )

# A job type that fails for good until the test lets it succeed: a dead
# letter whose replay then completes.
GATE = {"open": False}


class GatedPayload(Payload):
    order: str


@processor("test.gated", payload=GatedPayload, queue="test")
async def gated(ctx: JobContext, p: GatedPayload) -> dict[str, str]:
    if not GATE["open"]:
        raise PermanentError(f"payment gateway refused order {p.order}", reason="refused")
    return {"order": p.order, "state": "paid"}


class Server:
    """The API and a worker on their own event loop in a thread."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.runtime: Runtime | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(60) or self._failure is not None:
            raise RuntimeError(f"the server did not start: {self._failure!r}")

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop (its runtime and pools live there)."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by start()
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        settings = make_api_settings(
            self.database_url,
            queue_service_env="development",
            queue_service_rate_limit_read_per_minute=100_000,
        )
        self._stop = asyncio.Event()
        async with open_runtime(
            settings, self.database_url, extra_processors=[*PROCESSORS, gated]
        ) as runtime:
            self.runtime = runtime
            state = build_api_state(settings, runtime)
            await state.open()
            state.started = True
            worker = Worker(
                runtime.manager,
                [runtime.registry.queue("test")],
                deps=runtime.deps,
                listen_conninfo=runtime.conninfo,
                poll_interval=0.1,
                grace_seconds=2,
            )
            started = asyncio.Event()
            tasks = [
                asyncio.create_task(worker.run(self._stop)),
                asyncio.create_task(
                    serve_http(
                        create_app(state),
                        "127.0.0.1",
                        self.port,
                        self._stop,
                        state.settings.queue_service_http_keep_alive_seconds,
                        started,
                    )
                ),
            ]
            await started.wait()
            self._ready.set()
            try:
                await asyncio.gather(*tasks)
            finally:
                await state.close()


def token(sub: str, *roles: Role, tenant: str = TENANT) -> str:
    return mint_token(JWT_SECRET, subject=sub, tenant_id=tenant, roles=roles)


ADMIN = token("ops-admin", "admin")


@pytest.fixture(scope="module")
def server(pg_admin: Any, pg_admin_url: str, template_database: str) -> Iterator[Server]:
    name = f"qs_b_{secrets.token_hex(6)}"
    pg_admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    url = url_for_database(pg_admin_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
    running = Server(url)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        drop_database_on(pg_admin, name)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("DASHBOARD_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("dashboard-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        yield client


@pytest.fixture
def console_errors() -> list[str]:
    """What the page logged as errors (a test expecting a 4xx page removes its line)."""
    return []


@pytest.fixture
def page(browser: Any, server: Server, console_errors: list[str]) -> Iterator[Any]:
    """A page in a fresh context; fails the test on any console error or page error."""
    context = browser.new_context(base_url=server.base_url, viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors = console_errors
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda e: errors.append(str(e)))
    opened.on("dialog", lambda d: d.accept())
    opened.set_default_timeout(10_000)
    try:
        yield opened
        assert errors == [], f"console errors: {errors}"
    finally:
        context.close()


def signed_in(page: Any, jwt: str) -> None:
    """The session cookie the sign-in form sets (that form is tested on its own), then
    the overview: saves a form round trip per test."""
    page.context.add_cookies(
        [
            {
                "name": "qs_dashboard_session",
                "value": jwt,
                "domain": "127.0.0.1",
                "path": "/dashboard",
                "httpOnly": True,
                "sameSite": "Strict",
            }
        ]
    )
    page.goto("/dashboard/")


def sign_in(page: Any, jwt: str) -> None:
    page.goto("/dashboard/")
    assert page.url.endswith("/dashboard/sign-in")
    page.get_by_label("Access token (JWT)").fill(jwt)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url("**/dashboard/")


UNLABELLED = """
() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button, a[href], svg[role=img]')]
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
               && !e.textContent.trim())
  .map(e => e.outerHTML.slice(0, 120))
"""


def shoot(page: Any, path: Path) -> None:
    """Save a screenshot, having checked every control and link has an accessible name."""
    assert page.evaluate(UNLABELLED) == [], page.url
    page.screenshot(path=path, full_page=True)


def enqueue(api: httpx.Client, jwt: str, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/jobs", json=body, headers={"Authorization": f"Bearer {jwt}"})
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def api_get(api: httpx.Client, path: str, jwt: str = ADMIN) -> Any:
    response = api.get(path, headers={"Authorization": f"Bearer {jwt}"})
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_status(api: httpx.Client, job_id: str, status: str) -> None:
    for _ in range(100):
        if api_get(api, f"/jobs/{job_id}")["status"] == status:
            return
        threading.Event().wait(0.1)
    raise AssertionError(f"job {job_id} never reached {status}")


def seed_last_hour(database_url: str) -> None:
    """A busy last hour in the per-minute snapshots (the leader writes them
    once a minute; this server runs no leader): the sparklines' input."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO queue_metrics (at, tenant_id, queue, waiting, delayed, active,
                                       completed, failed, cancelled, oldest_waiting_age_seconds)
            SELECT date_trunc('minute', now()) - make_interval(mins => i), %s, q, 0, 0, 0,
                   greatest(0, (k * 40 + 30 * sin(i / 6.0 + k)))::int,
                   CASE WHEN (i + k) %% 11 = 0 THEN k + 2 ELSE 0 END, 0, NULL
            FROM generate_series(1, 60) AS i,
                 (VALUES ('test', 1), ('money', 2), ('communication', 3)) AS v(q, k)
            ON CONFLICT DO NOTHING
            """,
            (TENANT,),
        )


def test_signing_in_shows_the_counts_the_api_reports(
    page: Any, api: httpx.Client, server: Server, shots: Path
) -> None:
    for i in range(3):
        enqueue(api, ADMIN, {"type": "test.echo", "data": {"value": i}})
    enqueue(api, ADMIN, {"type": "test.echo", "data": {"value": "later"}, "delay_ms": 3_600_000})
    seed_last_hour(server.database_url)
    sign_in(page, ADMIN)
    queues = api_get(api, "/queues")["items"]
    assert [q["name"] for q in queues] == page.locator("tr[data-queue]").evaluate_all(
        "rows => rows.map(r => r.dataset.queue)"
    )
    for queue in queues:
        row = page.locator(f'tr[data-queue="{queue["name"]}"]')
        for status in ("waiting", "delayed", "active", "completed", "failed"):
            shown = row.locator(f'[data-count="{status}"]').inner_text()
            assert int(shown) == queue["counts"][status], (queue["name"], status)
    expected = next(q for q in queues if q["name"] == "test")
    assert expected["counts"]["delayed"] >= 1
    row = page.locator('tr[data-queue="test"]')
    assert row.locator("svg polyline").count() == 2  # throughput and failure rate
    shoot(page, shots / "overview.png")
    if os.environ.get("DASHBOARD_UPDATE_DOCS") == "1":
        box = page.locator("main").bounding_box()
        assert box is not None
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=DOCS_SCREENSHOT,
            clip={"x": 0, "y": 0, "width": 1280, "height": box["y"] + box["height"]},
        )
    # The table refreshes itself (htmx): a new delayed job shows without a reload.
    enqueue(api, ADMIN, {"type": "test.echo", "data": {}, "delay_ms": 3_600_000})
    sync_api.expect(row.locator('[data-count="delayed"]')).to_have_text(
        str(expected["counts"]["delayed"] + 1), timeout=10_000
    )
    # Readable on a phone: nothing wider than the screen but the tables' own scroll.
    # Keyboard: the first Tab reaches the skip link, which moves focus to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shoot(page, shots / "overview-phone.png")


def test_one_click_development_sign_in_makes_a_local_admin(page: Any, shots: Path) -> None:
    page.goto("/dashboard/sign-in")
    shoot(page, shots / "sign-in.png")
    page.get_by_role("button", name="Sign in as a local admin").click()
    page.wait_for_url("**/dashboard/")
    assert "dashboard-dev" in page.locator(".who").inner_text()
    cookie = next(c for c in page.context.cookies() if c["name"] == "qs_dashboard_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_when_the_session_ends_the_next_refresh_goes_to_sign_in(page: Any) -> None:
    sign_in(page, ADMIN)
    page.context.clear_cookies()
    page.wait_for_url("**/dashboard/sign-in", timeout=10_000)


def test_an_admin_pauses_and_resumes_a_queue(page: Any, api: httpx.Client, shots: Path) -> None:
    signed_in(page, ADMIN)
    page.get_by_role("link", name="test", exact=True).click()
    page.get_by_role("button", name="Pause").click()
    sync_api.expect(page.get_by_role("status")).to_have_text("Queue paused.")
    assert next(q for q in api_get(api, "/queues")["items"] if q["name"] == "test")["paused"]
    shoot(page, shots / "queue.png")
    page.get_by_role("button", name="Resume").click()
    sync_api.expect(page.get_by_role("status")).to_have_text("Queue resumed.")
    assert not next(q for q in api_get(api, "/queues")["items"] if q["name"] == "test")["paused"]


def test_an_admin_finds_a_job_by_id_type_or_idempotency_key(page: Any, api: httpx.Client) -> None:
    key = f"order-{secrets.token_hex(4)}"
    job = enqueue(
        api,
        ADMIN,
        {"type": "test.echo", "data": {}, "idempotency_key": key, "delay_ms": 60_000},
    )
    signed_in(page, ADMIN)
    page.goto("/dashboard/queues/test")
    search = page.get_by_label("Find a job by id, type or idempotency key")
    search.fill(key)
    search.press("Enter")
    sync_api.expect(page.get_by_role("link", name=job["id"])).to_have_count(1)
    search = page.get_by_label("Find a job by id, type or idempotency key")
    search.fill(job["id"])
    search.press("Enter")
    page.wait_for_url(f"**/dashboard/jobs/{job['id']}")
    sync_api.expect(page.locator("#job-status")).to_have_text("delayed")


def test_a_dead_letter_replayed_from_the_dlq_page_completes(
    page: Any, api: httpx.Client, shots: Path
) -> None:
    GATE["open"] = False
    order = f"order-{secrets.token_hex(3)}"
    job = enqueue(api, ADMIN, {"type": "test.gated", "data": {"order": order}, "max_attempts": 1})
    wait_for_status(api, job["id"], "failed")
    signed_in(page, ADMIN)
    page.get_by_role("link", name="Dead letters").click()
    page.get_by_label("Error contains").fill(order)
    page.get_by_role("button", name="Filter").click()
    page.get_by_role("button", name="Count matches (dry run)").click()
    sync_api.expect(page.locator("#bulk-result")).to_contain_text("1 dead letter would")
    shoot(page, shots / "dlq.png")
    GATE["open"] = True
    page.get_by_role("button", name="Replay dead letter").click()
    # The new job's page follows it live until it completes.
    sync_api.expect(page.locator("#job-status")).to_have_text("completed", timeout=15_000)
    sync_api.expect(page.locator("#job-live")).to_contain_text("paid")
    shoot(page, shots / "job.png")


def test_an_operator_acknowledges_an_alert(
    page: Any, api: httpx.Client, server: Server, shots: Path
) -> None:
    assert server.runtime is not None
    firing = server.run(
        server.runtime.store.alert_observe(
            rule="dlq_growth",
            fire_key=f"dlq_growth:{secrets.token_hex(3)}",
            severity="warning",
            value=12,
            threshold=10,
            message="12 dead letters in the last 5 minutes",
        )
    )
    signed_in(page, ADMIN)
    page.get_by_role("link", name="Alerts").click()
    row = page.locator(f'tr[data-alert="{firing.id}"]')
    row.get_by_role("button", name="Acknowledge").click()
    sync_api.expect(page.get_by_role("status")).to_have_text("Alert acknowledged.")
    sync_api.expect(page.locator(f'tr[data-alert="{firing.id}"] [data-status]')).to_contain_text(
        "acknowledged"
    )
    alerts = api_get(api, "/alerts")["items"]
    assert next(a for a in alerts if a["id"] == str(firing.id))["status"] == "acknowledged"
    shoot(page, shots / "alerts.png")


def test_an_operator_stops_and_resets_an_outbound_service(page: Any, shots: Path) -> None:
    signed_in(page, ADMIN)
    page.get_by_role("link", name="Rate limits").click()
    row = page.locator('tr[data-service="webhooks"]')
    row.get_by_label("Reason to stop webhooks").fill("receiver outage")
    row.get_by_role("button", name="Emergency stop").click()
    sync_api.expect(page.get_by_role("status")).to_contain_text("Emergency stop set")
    sync_api.expect(page.locator('tr[data-service="webhooks"]')).to_contain_text(
        "stopped receiver outage"
    )
    shoot(page, shots / "rate-limits.png")
    page.locator('tr[data-service="webhooks"]').get_by_role("button", name="Reset").click()
    sync_api.expect(page.get_by_role("status")).to_have_text("Limit reset.")
    sync_api.expect(page.locator('tr[data-service="webhooks"] .badge')).to_have_text("open")


def test_schedules_read_in_words_with_their_next_fire_times(
    page: Any, api: httpx.Client, shots: Path
) -> None:
    added = api.post(
        "/schedules",
        json={
            "name": "weekday-report",
            "cron": "30 6 * * MON-FRI",
            "timezone": "Europe/Paris",
            "type": "test.echo",
            "data": {},
        },
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert added.status_code == 201, added.text
    signed_in(page, ADMIN)
    page.get_by_role("link", name="Schedules").click()
    row = page.get_by_role("row", name=re.compile("weekday-report"))
    sync_api.expect(row).to_contain_text(added.json()["explain"])
    assert row.locator("li").count() == 3
    sync_api.expect(row.locator("li").first).to_contain_text("06:30 Europe/Paris")
    shoot(page, shots / "schedules.png")


def test_a_user_cannot_see_another_user_s_job(
    page: Any, api: httpx.Client, console_errors: list[str], shots: Path
) -> None:
    secret = f"secret-{secrets.token_hex(4)}"
    alice = token("alice", "user")
    job = enqueue(api, alice, {"type": "test.echo", "data": {"value": secret}, "delay_ms": 60_000})
    sign_in(page, token("bob", "user"))
    response = page.goto(f"/dashboard/jobs/{job['id']}")
    assert response is not None and response.status == 404
    assert secret not in page.content()
    shoot(page, shots / "not-found.png")
    # Chromium logs the 404 of the document itself; that one is expected.
    console_errors[:] = [e for e in console_errors if "status of 404" not in e]
    # Alice herself sees it (the 404 above is about ownership, not the page).
    page.context.clear_cookies()
    sign_in(page, alice)
    response = page.goto(f"/dashboard/jobs/{job['id']}")
    assert response is not None and response.status == 200
    assert secret in page.content()


def test_a_forged_csrf_post_is_refused(page: Any, api: httpx.Client) -> None:
    signed_in(page, ADMIN)
    forged = page.request.post(
        "/dashboard/queues/test/pause",
        form={"csrf": "0" * 64},
        max_redirects=0,
    )
    assert forged.status == 403
    cross_site = page.request.post(
        "/dashboard/queues/test/pause",
        form={"csrf": page.locator('input[name="csrf"]').first.input_value()},
        headers={"Origin": "https://attacker.example"},
        max_redirects=0,
    )
    assert cross_site.status == 403
    assert not next(q for q in api_get(api, "/queues")["items"] if q["name"] == "test")["paused"]
