"""GET /queues, /queues/{name}/status and /queues/{name}/jobs run a fixed
number of statements, however many jobs they return (no N+1).

Statements are counted where they leave the process: every execute of a
psycopg async cursor (the API's pool uses no other path), recorded with its
text so the assertion can also say which statement repeated."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from tests.api.conftest import TENANT, Api

PAGE_FIELDS = ("id", "status", "data", "last_error", "run_at", "finished_at")


@contextmanager
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The text of every statement sent to PostgreSQL inside the block."""
    sent: list[str] = []
    original = psycopg.AsyncCursor.execute

    async def counting(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(query if isinstance(query, str) else query.as_string(self)))
        return await original(self, query, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(psycopg.AsyncCursor, "execute", counting)
        yield sent


async def enqueue(api: Api, n: int, job_type: str = "test.echo") -> None:
    jobs = [{"type": job_type, "data": {"value": i}, "delay_ms": 0} for i in range(n)]
    response = await api.client.post(
        "/jobs/batch", json={"jobs": jobs}, headers=api.auth("a1", TENANT, "admin")
    )
    assert response.status_code == 201, response.text


async def get(
    api: Api, monkeypatch: pytest.MonkeyPatch, path: str, **params: Any
) -> tuple[Any, list[str]]:
    headers = api.auth("a1", TENANT, "admin")
    with statements(monkeypatch) as sent:
        response = await api.client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json(), sent


def job_reads(sent: list[str]) -> list[str]:
    """Statements reading jobs or pauses (the inbound limiter's own writes,
    batched on its own schedule, are not the endpoint's)."""
    tables = ("FROM jobs", "FROM finished_jobs", "FROM queue_pauses")
    return [s for s in sent if any(t in s for t in tables)]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/queues", {}),
        ("/queues/test/status", {}),
        ("/queues/test/jobs", {"status": "waiting", "limit": 100}),
    ],
)
async def test_queue_reads_send_the_same_statements_for_two_jobs_as_for_forty(
    api: Api, monkeypatch: pytest.MonkeyPatch, path: str, params: dict[str, Any]
) -> None:
    await enqueue(api, 2)
    _, few = await get(api, monkeypatch, path, **params)
    await enqueue(api, 38)
    body, many = await get(api, monkeypatch, path, **params)
    assert len(job_reads(many)) == len(job_reads(few)), job_reads(many)
    # Counts, pauses and two sample pages at most: never a statement per job or queue.
    assert len(job_reads(many)) <= 4, job_reads(many)
    assert not [s for s in many if "WHERE id = " in s], "a job was fetched by id"
    if path.endswith("/jobs"):
        assert len(body["items"]) == 40


async def test_a_page_of_finished_jobs_is_one_statement_with_whole_jobs(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    await enqueue(api, 12)
    api.sql(
        "WITH gone AS (DELETE FROM jobs RETURNING *) "
        "INSERT INTO finished_jobs (id, tenant_id, queue, type, status, priority, data, attempts,"
        " max_attempts, stalled_count, max_stalled, lease_seconds, created_by, created_at,"
        " run_at, started_at, finished_at, last_error)"
        " SELECT id, tenant_id, queue, type, 'failed', priority, data, 1, max_attempts,"
        " 0, max_stalled, lease_seconds, created_by, created_at, run_at, now(),"
        " now() - (data->>'value')::int * interval '1 second', 'boom ' || (data->>'value')"
        " FROM gone"
    )
    first, sent = await get(api, monkeypatch, "/queues/test/jobs", status="failed", limit=5)
    assert len(job_reads(sent)) == 1
    assert [j["data"]["value"] for j in first["items"]] == [0, 1, 2, 3, 4]
    assert [j["last_error"] for j in first["items"]] == [f"boom {i}" for i in range(5)]
    assert all(j["status"] == "failed" and j["finished_at"] for j in first["items"])
    seen = [j["data"]["value"] for j in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page, _ = await get(
            api, monkeypatch, "/queues/test/jobs", status="failed", limit=5, cursor=cursor
        )
        seen += [j["data"]["value"] for j in page["items"]]
        cursor = page["next_cursor"]
    assert seen == list(range(12))
