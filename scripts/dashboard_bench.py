"""Measure the dashboard's two costs that decision 0025 quotes.

``overview``: the overview fragment against the two API reads it is made of
(``GET /queues`` + ``GET /metrics/json``), in-process (httpx ASGITransport),
alternated, medians. ``search``: the ``job_search`` statement with N finished
jobs of one tenant and queue, for a matching type, an old key and no match.
Each run uses a scratch database (created from the URL's server, migrated by
the shipped migrations, dropped after).

    .venv/bin/python scripts/dashboard_bench.py overview --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python scripts/dashboard_bench.py search --rows 200000 --database-url ...
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psycopg

from queue_service.api.app import create_app
from queue_service.api.auth.tokens import mint_token
from queue_service.api.dashboard.session import SESSION_COOKIE
from queue_service.api.state import build_api_state
from queue_service.runtime.service import open_runtime
from queue_service.settings import Settings
from queue_service.store.admin import SEARCH_WINDOW
from queue_service.store.databases import url_for_database
from queue_service.store.migrate import apply_migrations
from queue_service.store.queries import Q

SECRET = secrets.token_urlsafe(48)  # a throwaway HS256 key for this run


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    name = f"qs_dash_bench_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = url_for_database(server_url, name)
    try:
        apply_migrations(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def overview(url: str, iterations: int) -> None:
    settings = Settings(
        database_url=url, jwt_secret=SECRET, queue_service_rate_limit_read_per_minute=10**6
    )
    token = mint_token(SECRET, subject="ops", tenant_id="acme", roles=["admin"])
    bearer = {"Authorization": f"Bearer {token}"}
    async with open_runtime(settings, url) as runtime:
        state = build_api_state(settings, runtime)
        await state.open()
        state.started = True
        transport = httpx.ASGITransport(app=create_app(state))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
                for i in range(200):
                    await c.post(
                        "/jobs", json={"type": "bench.noop", "data": {"i": i}}, headers=bearer
                    )
                await runtime.store.take_metric_snapshot()
                c.cookies.set(SESSION_COOKIE, token, path="/dashboard")
                for _ in range(5):
                    await c.get("/dashboard/fragments/overview")
                api: list[float] = []
                page: list[float] = []
                for _ in range(iterations):
                    started = time.perf_counter()
                    await c.get("/queues", headers=bearer)
                    await c.get("/metrics/json", headers=bearer)
                    api.append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    response = await c.get("/dashboard/fragments/overview")
                    page.append((time.perf_counter() - started) * 1000)
                    response.raise_for_status()
        finally:
            await state.close()
    print(f"GET /queues + GET /metrics/json: median {statistics.median(api):.2f} ms")
    print(f"GET /dashboard/fragments/overview: median {statistics.median(page):.2f} ms")


def search(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(
            """
            INSERT INTO finished_jobs (id, tenant_id, queue, type, status, priority, data,
                attempts, max_attempts, stalled_count, max_stalled, lease_seconds,
                idempotency_key, created_at, run_at, finished_at)
            SELECT gen_random_uuid(), 't1', 'communication',
                   CASE WHEN i %% 3 = 0 THEN 'email.send' ELSE 'sms.send' END, 'completed',
                   5, '{}', 1, 3, 0, 3, 30, 'key-' || i, now() - make_interval(secs => i),
                   now() - make_interval(secs => i), now() - make_interval(secs => i)
            FROM generate_series(1, %s) AS i
            """,
            (rows,),
        )
        c.execute("ANALYZE finished_jobs")
        for term in ("email.send", "key-12345", "no-such-thing"):
            times = []
            for _ in range(5):
                started = time.perf_counter()
                params = {"queue": "communication", "tenant": "t1", "term": term, "limit": 50}
                c.execute(Q["job_search"], {**params, "window": SEARCH_WINDOW}).fetchall()
                times.append((time.perf_counter() - started) * 1000)
            print(f"rows={rows} term={term!r}: median {statistics.median(times):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["overview", "search"])
    parser.add_argument("--database-url", required=True, help="a superuser URL of the server")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--iterations", type=int, default=150)
    args = parser.parse_args()
    with scratch_database(args.database_url) as url:
        if args.what == "overview":
            asyncio.run(overview(url, args.iterations))
        else:
            search(url, args.rows)


if __name__ == "__main__":
    main()
