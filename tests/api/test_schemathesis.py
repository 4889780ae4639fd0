"""Property-based tests of the whole API from its own OpenAPI document
(schemathesis): for every operation, generated valid and invalid requests
with an admin token never get a 5xx, and every response is one the
document declares, with the body it declares.

schemathesis calls an ASGI app on an event loop of its own (one portal
thread for the process), so the app here opens its runtime and pool at
lifespan start-up, in that loop; the tests themselves are plain functions.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any, cast

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import Receive, Scope, Send

from queue_service.api.app import create_app
from queue_service.api.auth.tokens import mint_token
from queue_service.api.state import ApiState, build_api_state
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.schedules import ScheduleManager, ScheduleRequest
from queue_service.runtime.service import Runtime, open_runtime
from queue_service.store.databases import drop_database_on, url_for_database
from tests.api.conftest import JWT_SECRET, TENANT, make_api_settings
from tests.support.processors import PROCESSORS

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


class LifespanApi:
    """The API as an ASGI app that opens its runtime and pool at lifespan
    start-up, in whichever event loop runs it, and closes them at shutdown.

    schemathesis' pytest plugin ends every lifespan after each test and the
    next request starts it again, so this opens afresh each time (the
    database, and the seeded objects in it, stay).
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.app: Any = None
        self.seed: dict[str, list[str]] = {}
        self._stack = AsyncExitStack()

    async def _open(self) -> None:
        self._stack = AsyncExitStack()
        settings = make_api_settings(self.database_url)
        runtime = await self._stack.enter_async_context(
            open_runtime(settings, self.database_url, extra_processors=PROCESSORS)
        )
        state = build_api_state(settings, runtime)
        await state.open()
        self._stack.push_async_callback(state.close)
        state.started = True
        self.app = create_app(state)
        if not self.seed:
            await self._seed(runtime)

    async def _seed(self, runtime: Runtime) -> None:
        """Objects for the explicit cases: jobs in each state, dead letters."""
        manager = runtime.manager

        async def enqueue(job_type: str, data: dict[str, Any], **fields: Any) -> str:
            done = await manager.enqueue(
                EnqueueRequest(job_type, data, TENANT, created_by="st-admin", **fields)
            )
            return str(done.job_id)

        self.seed["delayed"] = [
            await enqueue("test.echo", {"value": i}, delay_ms=3_600_000) for i in range(3)
        ]
        self.seed["waiting"] = [await enqueue("test.echo", {"value": "w"})]
        for _ in range(3):
            await enqueue("test.fail", {"mode": "permanent"})
        claimed = await runtime.store.claim("test", ["test.fail"], 3, "st-seed")
        await runtime.store.finish_many(
            [(c.id, c.lease_token, "card declined") for c in claimed], "failed"
        )
        self.seed["failed"] = [str(c.id) for c in claimed]
        entries = await runtime.store.list_dead_letters(TENANT, 10)
        self.seed["dead_letters"] = [str(e.id) for e in entries]
        schedule = await ScheduleManager(manager).add(
            ScheduleRequest(TENANT, "st-seeded", "*/5 * * * *", "test.echo", {"value": 1})
        )
        self.seed["schedules"] = [str(schedule.id)]
        firing = await runtime.store.alert_observe(
            rule="money_queue_depth",
            fire_key="money_queue_depth",
            severity="critical",
            value=51,
            threshold=50,
            message="money queue depth: 51 jobs ready to run (alert above 50)",
        )
        self.seed["alerts"] = [str(firing.id)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            assert self.app is not None, "the lifespan has not started"
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._open()
                except Exception as exc:
                    await self._stack.aclose()
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stack.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


@pytest.fixture(scope="module")
def api_schema(
    pg_admin_url: str, pg_admin: psycopg.Connection[Any], template_database: str
) -> Iterator[Any]:
    name = f"qs_st_{secrets.token_hex(6)}"
    pg_admin.execute(
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template_database)
        )
    )
    try:
        app = LifespanApi(url_for_database(pg_admin_url, name))
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        assert len(app.seed["dead_letters"]) == 3
        yield schema, app.seed
        shutdown_lifespans()
    finally:
        drop_database_on(pg_admin, name)


ADMIN = {
    "Authorization": "Bearer "
    + mint_token(
        JWT_SECRET, subject="st-admin", tenant_id=TENANT, roles=["admin"], ttl_seconds=3600
    )
}
# The document needs no database: list the operations at collection time.
OPERATIONS = [
    (method.upper(), path)
    for path, item in create_app(cast(ApiState, None)).openapi()["paths"].items()
    for method in item
]


def explicit_cases(method: str, path: str, seed: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Requests known to reach the success paths (random ones mostly get 4xx)."""
    echo = {"type": "test.echo", "data": {"value": 1}}
    job, dead = seed["delayed"][0], seed["dead_letters"][0]
    cases: dict[tuple[str, str], list[dict[str, Any]]] = {
        ("POST", "/jobs"): [
            {"body": echo},
            {"body": {**echo, "idempotency_key": "st-1", "priority": 1, "max_attempts": 2}},
            {"body": {**echo, "idempotency_key": "st-1", "priority": 1, "max_attempts": 2}},
            {"body": {**echo, "run_at": "2030-01-01T00:00:00Z"}},
        ],
        ("POST", "/jobs/batch"): [{"body": {"jobs": [echo, echo]}}],
        ("GET", "/jobs/{job_id}"): [
            {"path_parameters": {"job_id": i}} for i in [job, *seed["failed"]]
        ],
        ("DELETE", "/jobs/{job_id}"): [{"path_parameters": {"job_id": seed["delayed"][1]}}] * 2,
        ("POST", "/jobs/{job_id}/retry"): [{"path_parameters": {"job_id": seed["failed"][0]}}] * 2,
        ("GET", "/queues/{name}/status"): [{"path_parameters": {"name": "test"}}],
        ("GET", "/queues/{name}/jobs"): [
            {"path_parameters": {"name": "test"}, "query": {"status": s, "limit": 1}}
            for s in ("waiting", "delayed", "failed", "cancelled", "completed", "active")
        ],
        ("POST", "/queues/{name}/pause"): [{"path_parameters": {"name": "test"}}],
        ("POST", "/queues/{name}/resume"): [{"path_parameters": {"name": "test"}}],
        ("POST", "/queues/{name}/clear"): [{"path_parameters": {"name": "background"}}],
        ("GET", "/dlq"): [{"query": {"limit": 1}}, {"query": {"queue": "test", "error": "card"}}],
        ("GET", "/dlq/{dlq_id}"): [{"path_parameters": {"dlq_id": dead}}],
        ("POST", "/dlq/{dlq_id}/replay"): [{"path_parameters": {"dlq_id": seed["dead_letters"][1]}}]
        * 2,
        ("DELETE", "/dlq/{dlq_id}"): [{"path_parameters": {"dlq_id": seed["dead_letters"][2]}}] * 2,
        ("POST", "/dlq/replay"): [{"body": {}}, {"body": {"dry_run": False, "limit": 1}}],
        ("GET", "/rate-limits/status/{key}"): [
            {"path_parameters": {"key": k}}
            for k in ("read", "enqueue:st-admin", "admin", "stripe", "smtp")
        ],
        ("POST", "/rate-limits/reset/{key}"): [
            {"path_parameters": {"key": k}} for k in ("admin:nobody", "stripe")
        ],
        ("GET", "/alerts"): [
            {"query": {"limit": 1}},
            {"query": {"status": "firing", "severity": "critical", "rule": "money_queue_depth"}},
        ],
        ("POST", "/alerts/{alert_id}/acknowledge"): [
            {"path_parameters": {"alert_id": seed["alerts"][0]}}
        ]
        * 2,
        ("GET", "/schedules"): [{"query": {"limit": 1}}],
        ("POST", "/schedules"): [
            {"body": {"name": "st-hourly", "cron": "0 * * * *", **echo}},
            {"body": {"name": "st-hourly", "cron": "0 * * * *", **echo}},  # 409
            {
                "body": {
                    "name": "st-tz",
                    "cron": "30 2 * * *",
                    "timezone": "Europe/Berlin",
                    "misfire": "skip",
                    "active": False,
                    **echo,
                }
            },
            {"body": {"name": "st-bad", "cron": "61 * * * *", **echo}},
        ],
        ("DELETE", "/schedules/{schedule_id}"): [
            {"path_parameters": {"schedule_id": seed["schedules"][0]}}
        ]
        * 2,
        ("POST", "/rate-limits/stop/{key}"): [
            {"path_parameters": {"key": "smtp"}, "body": {"reason": "test"}}
        ],
    }
    return cases.get((method, path), [])


# 25 per operation keeps CI quick; SCHEMATHESIS_EXAMPLES=500 for a deep local run.
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "25"))


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_operation_conforms_to_the_openapi_document(
    api_schema: tuple[Any, dict[str, list[str]]], method: str, path: str
) -> None:
    schema, seed = api_schema
    operation = schema[path][method]
    for explicit in explicit_cases(method, path, seed):
        operation.Case(**explicit).call_and_validate(headers=ADMIN, checks=CHECKS)

    cases = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES,
        deadline=2000,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: Case[Any]) -> None:
        case.call_and_validate(headers=ADMIN, checks=CHECKS)

    conforms()
