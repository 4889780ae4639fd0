"""Who may call what: SPEC §6's "who" column, as a table.

Every endpoint is called as each kind of caller. An allowed caller gets
anything but 401/403 (a 404 for a made-up id is fine: the gate let it in);
no credentials is a 401; a known caller without the role (or a platform
service outside POST /jobs and POST /jobs/batch) is a 403.

"user" in the SPEC's column is the least role: venue_admin and admin may do
what a user may. A token with no roles at all may do nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import httpx
import pytest

from tests.api.conftest import TENANT, Api

Caller = Literal["anonymous", "no_roles", "user", "venue_admin", "admin", "service"]
CALLERS: tuple[Caller, ...] = ("anonymous", "no_roles", "user", "venue_admin", "admin", "service")
USERS: frozenset[Caller] = frozenset({"user", "venue_admin", "admin"})
ADMIN: frozenset[Caller] = frozenset({"admin"})
NOBODY_NEEDED: frozenset[Caller] = frozenset(CALLERS)
SOME_ID = UUID("01900000-0000-7000-8000-000000000001")
ECHO = {"type": "test.echo", "data": {"value": 1}}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    allowed: frozenset[Caller]
    body: Any = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


MATRIX = [
    Endpoint("POST", "/jobs", USERS | {"service"}, ECHO),
    Endpoint("GET", f"/jobs/{SOME_ID}", USERS),
    Endpoint("GET", f"/jobs/{SOME_ID}/events", USERS),
    Endpoint("POST", f"/jobs/{SOME_ID}/retry", ADMIN),
    Endpoint("DELETE", f"/jobs/{SOME_ID}", frozenset({"admin", "venue_admin"})),
    Endpoint("POST", "/jobs/batch", frozenset({"admin", "service"}), {"jobs": [ECHO]}),
    Endpoint("GET", "/queues", USERS),
    Endpoint("GET", "/queues/test/status", USERS),
    Endpoint("GET", "/queues/test/jobs?status=waiting&limit=5", ADMIN),
    Endpoint("GET", "/queues/test/jobs/search?q=test.echo", ADMIN),
    Endpoint("POST", "/queues/test/pause", ADMIN),
    Endpoint("POST", "/queues/test/resume", ADMIN),
    Endpoint("POST", "/queues/test/clear", ADMIN),
    Endpoint("GET", "/dlq", ADMIN),
    Endpoint("GET", f"/dlq/{SOME_ID}", ADMIN),
    Endpoint("POST", f"/dlq/{SOME_ID}/replay", ADMIN),
    Endpoint("DELETE", f"/dlq/{SOME_ID}", ADMIN),
    Endpoint("POST", "/dlq/replay", ADMIN, {"dry_run": True}),
    Endpoint("GET", "/alerts?status=firing&severity=critical", USERS),
    Endpoint("POST", f"/alerts/{SOME_ID}/acknowledge", ADMIN),
    Endpoint("GET", "/rate-limits/status/read", ADMIN),
    Endpoint("POST", "/rate-limits/reset/read", ADMIN),
    Endpoint("POST", "/rate-limits/stop/webhooks", ADMIN),
    Endpoint("GET", "/schedules", ADMIN),
    Endpoint("POST", "/schedules", ADMIN, {"name": "x", "cron": "0 * * * *", **ECHO}),
    Endpoint("DELETE", f"/schedules/{SOME_ID}", ADMIN),
    Endpoint("GET", "/health/live", NOBODY_NEEDED),
    Endpoint("GET", "/health/ready", NOBODY_NEEDED),
    Endpoint("GET", "/health/startup", NOBODY_NEEDED),
    # Without METRICS_TOKEN (the test settings) /metrics is open.
    Endpoint("GET", "/metrics", NOBODY_NEEDED),
    Endpoint("GET", "/metrics/json", USERS),
]


async def call(api: Api, endpoint: Endpoint, caller: Caller) -> httpx.Response:
    if caller == "service":
        client = api.service_client("order-service", TENANT)
        return await client.request(endpoint.method, endpoint.path, endpoint.body)
    headers: dict[str, str] = {}
    if caller == "no_roles":
        headers = api.auth("nobody", TENANT)
    elif caller != "anonymous":
        headers = api.auth(f"{caller}-1", TENANT, caller)
    return await api.client.request(
        endpoint.method, endpoint.path, json=endpoint.body, headers=headers
    )


def expected(endpoint: Endpoint, caller: Caller) -> str:
    if caller in endpoint.allowed:
        return "allowed"
    return "401" if caller == "anonymous" else "403"


@pytest.mark.parametrize("endpoint", MATRIX, ids=str)
async def test_each_caller_gets_exactly_the_access_the_spec_grants(
    api: Api, endpoint: Endpoint
) -> None:
    outcomes = {}
    for caller in CALLERS:
        response = await call(api, endpoint, caller)
        assert response.status_code < 500, (caller, response.text)
        if response.status_code in (401, 403):
            assert response.headers["content-type"] == "application/problem+json"
            outcomes[caller] = str(response.status_code)
        else:
            outcomes[caller] = "allowed"
        if response.status_code == 401:
            assert response.headers["www-authenticate"] == "Bearer"

    assert outcomes == {caller: expected(endpoint, caller) for caller in CALLERS}


async def test_the_matrix_covers_every_operation_of_the_app(api: Api) -> None:
    """A new route must get a row here: its roles decided, not defaulted."""
    spec = (await api.client.get("/openapi.json")).json()
    in_app = {
        (method.upper(), _template(path)) for path, ops in spec["paths"].items() for method in ops
    }
    in_matrix = {(e.method, _template(e.path.split("?")[0])) for e in MATRIX}

    assert in_app == in_matrix


FIXED_SEGMENTS = frozenset(
    {
        *("jobs", "batch", "retry", "queues", "status", "pause", "resume", "clear"),
        *("dlq", "replay", "rate-limits", "reset", "health", "live", "ready", "startup"),
        "stop",
        "schedules",
        *("alerts", "acknowledge"),
        *("events", "search"),
    }
)


def _template(path: str) -> str:
    """/jobs/<uuid>/retry and /jobs/{job_id}/retry both as /jobs/*/retry."""
    parts = path.strip("/").split("/")
    return "/" + "/".join(p if p in FIXED_SEGMENTS else "*" for p in parts)
