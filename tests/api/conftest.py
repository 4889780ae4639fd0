"""HTTP API fixtures: the real app on a fresh database, reached in-process
(httpx.ASGITransport) or through a real uvicorn server on a free port.

Nothing of ours is mocked: requests go through the middleware, the auth
dependencies, the tenant-scoped pool (row-level security applies) and
PostgreSQL. Counts are read with a superuser connection, which RLS does not
restrict, so "nothing was written" is checked across every tenant.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from queue_service.api.app import create_app
from queue_service.api.auth.principal import Role
from queue_service.api.auth.tokens import mint_token
from queue_service.api.server import serve_http
from queue_service.api.state import ApiState, build_api_state
from queue_service.client import ServiceClient
from queue_service.runtime.service import Runtime, open_runtime
from queue_service.runtime.worker import Worker
from queue_service.settings import Settings
from tests.support.processors import LEDGER_DDL, PROCESSORS
from tests.support.workers import worker_running as running

JWT_SECRET = "api-tests-jwt-secret-0123456789-abcdefghijklmnop"
HMAC_SECRET = "api-tests-hmac-secret-0123456789-ABCDEFGHIJKLMNOP"
BASE_URL = "http://queue.test"
TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"

# Tables a job can be in; counted together for "nothing was written".
JOB_TABLES = ("jobs", "finished_jobs", "job_archive")


def make_api_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "jwt_secret": JWT_SECRET,
        "internal_hmac_secret": HMAC_SECRET,
        "queue_service_poll_interval_seconds": 0.2,
        "queue_service_shutdown_grace_seconds": 2,
        "queue_service_pool_size": 10,
        # TENANT's admins operate the platform's shared outbound limits.
        "queue_service_platform_operator_tenants": TENANT,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Api:
    """One running app: its client, its state, and helpers to call it."""

    app: FastAPI
    state: ApiState
    client: httpx.AsyncClient
    transport: httpx.AsyncBaseTransport
    database_url: str
    base_url: str = BASE_URL
    _service_clients: list[ServiceClient] = field(default_factory=list)

    @property
    def runtime(self) -> Runtime:
        return self.state.runtime

    def token(self, sub: str, tenant: str, *roles: Role, **claims: Any) -> str:
        """An HS256 token signed with the configured test secret."""
        return mint_token(JWT_SECRET, subject=sub, tenant_id=tenant, roles=roles, **claims)

    def auth(self, sub: str, tenant: str, *roles: Role) -> dict[str, str]:
        """The Authorization header of such a token."""
        return {"Authorization": f"Bearer {self.token(sub, tenant, *roles)}"}

    def service_client(self, service: str, tenant: str) -> ServiceClient:
        """A ServiceClient signing with the test HMAC secret, on this app's transport."""
        # The ASGI transport is shared; a live server gets a connection pool per client.
        transport = self.transport if isinstance(self.transport, httpx.ASGITransport) else None
        client = ServiceClient(self.base_url, service, HMAC_SECRET, tenant, transport=transport)
        self._service_clients.append(client)
        return client

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run SQL as the superuser (row-level security does not apply)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description is not None else []

    def job_count(self, tenant: str | None = None) -> int:
        total = 0
        for table in JOB_TABLES:
            rows = self.sql(
                f"SELECT count(*) FROM {table} WHERE %s::text IS NULL OR tenant_id = %s",
                tenant,
                tenant,
            )
            total += int(rows[0][0])
        return total

    def key_count(self) -> int:
        return int(self.sql("SELECT count(*) FROM queue_idempotency_keys")[0][0])

    async def aclose(self) -> None:
        for client in self._service_clients:
            await client.aclose()


OpenApi = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def open_api(database_url: str) -> OpenApi:
    """Open an app with Settings overrides (``open_api(jwt_audience="x")``)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)

    @asynccontextmanager
    async def _open(conninfo: str | None = None, **overrides: Any) -> AsyncIterator[Api]:
        """``conninfo``: where the app connects (e.g. through PgBouncer);
        the test's superuser reads (Api.sql) always go to the database direct."""
        target = conninfo or database_url
        settings = make_api_settings(target, **overrides)
        async with open_runtime(settings, target, extra_processors=PROCESSORS) as runtime:
            state = build_api_state(settings, runtime)
            await state.open()
            state.started = True
            app = create_app(state)
            transport = httpx.ASGITransport(app=app)
            try:
                async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
                    api = Api(app, state, client, transport, database_url)
                    try:
                        yield api
                    finally:
                        await api.aclose()
            finally:
                await state.close()

    return _open


@pytest.fixture
async def api(open_api: OpenApi) -> AsyncIterator[Api]:
    """The app with the default test settings, reached in-process."""
    async with open_api() as opened:
        yield opened


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def live_api(open_api: OpenApi) -> AsyncIterator[Api]:
    """The app served by a real uvicorn server on a free local port.

    ``client`` and ``service_client`` go over TCP to it.
    """
    async with open_api() as opened:
        stop = asyncio.Event()
        started = asyncio.Event()
        port = free_port()
        server = asyncio.create_task(
            serve_http(
                opened.app,
                "127.0.0.1",
                port,
                stop,
                opened.state.settings.queue_service_http_keep_alive_seconds,
                started=started,
            )
        )
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({server, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if not started.is_set():
            waiter.cancel()
            stop.set()
            await asyncio.gather(server, return_exceptions=True)
            raise RuntimeError(f"uvicorn did not start on port {port}")
        base_url = f"http://127.0.0.1:{port}"
        transport = httpx.AsyncHTTPTransport()
        try:
            async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
                live = Api(
                    opened.app, opened.state, client, transport, opened.database_url, base_url
                )
                try:
                    yield live
                finally:
                    await live.aclose()
        finally:
            stop.set()
            await asyncio.wait_for(server, timeout=15)


@asynccontextmanager
async def worker_running(api: Api, queues: tuple[str, ...] = ("test",)) -> AsyncIterator[Worker]:
    """An in-process worker on the api's runtime, drained when the block ends."""
    async with running(api.runtime, queues, poll_interval=0.1) as worker:
        yield worker
