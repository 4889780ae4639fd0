"""/queues, /dlq and /rate-limits through HTTP, against real workers:
true per-tenant counts, status, keyset pagination, pause/resume/clear,
dead letters (filters, replay once, delete, bulk replay), inbound limits."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.api.conftest import OTHER_TENANT, TENANT, Api, OpenApi, worker_running
from tests.support.waiting import eventually

PROBLEM = "application/problem+json"
ZERO = {"waiting": 0, "delayed": 0, "active": 0, "completed": 0, "failed": 0, "cancelled": 0}


def echo(value: Any = 1, **fields: Any) -> dict[str, Any]:
    return {"type": "test.echo", "data": {"value": value}, **fields}


def failing(mode: str = "permanent", **fields: Any) -> dict[str, Any]:
    return {"type": "test.fail", "data": {"mode": mode}, **fields}


async def post_jobs(
    api: Api, jobs: list[dict[str, Any]], tenant: str = TENANT, sub: str = "u1"
) -> list[dict[str, Any]]:
    out = []
    for body in jobs:
        response = await api.client.post("/jobs", json=body, headers=api.auth(sub, tenant, "user"))
        assert response.status_code == 201, response.text
        out.append(response.json())
    return out


async def batch(api: Api, jobs: list[dict[str, Any]], tenant: str = TENANT) -> list[dict[str, Any]]:
    response = await api.client.post(
        "/jobs/batch", json={"jobs": jobs}, headers=api.auth("a1", tenant, "admin")
    )
    assert response.status_code == 201, response.text
    created: list[dict[str, Any]] = response.json()["jobs"]
    return created


async def admin_get(api: Api, path: str, tenant: str = TENANT, **params: Any) -> Any:
    response = await api.client.get(path, params=params, headers=api.auth("a1", tenant, "admin"))
    assert response.status_code == 200, response.text
    return response.json()


async def admin_post(api: Api, path: str, tenant: str = TENANT, json: Any = None) -> httpx.Response:
    return await api.client.post(path, json=json, headers=api.auth("a1", tenant, "admin"))


async def queue(api: Api, name: str = "test", tenant: str = TENANT) -> dict[str, Any]:
    listed = await admin_get(api, "/queues", tenant)
    found: dict[str, Any] = next(q for q in listed["items"] if q["name"] == name)
    return found


def status_counts(api: Api, tenant: str) -> dict[str, int]:
    """The counts straight from the tables (superuser: no RLS)."""
    counts = dict(ZERO)
    live = api.sql(
        "SELECT CASE WHEN status = 'waiting' AND run_at > now() THEN 'delayed' ELSE status END,"
        " count(*) FROM jobs WHERE tenant_id = %s AND queue = 'test' GROUP BY 1",
        tenant,
    )
    done = api.sql(
        "SELECT status, count(*) FROM finished_jobs WHERE tenant_id = %s AND queue = 'test'"
        " GROUP BY 1",
        tenant,
    )
    for status, n in [*live, *done]:
        counts[status] = n
    return counts


# --- queues --------------------------------------------------------------------------------


async def test_queue_list_shows_true_counts_of_the_callers_tenant_only(api: Api) -> None:
    async with worker_running(api):
        mine = await post_jobs(
            api, [echo(1), echo(2), failing(), {"type": "test.sleep", "data": {"seconds": 30}}]
        )
        await post_jobs(api, [echo(i) for i in range(5)], OTHER_TENANT)

        async def settled() -> bool:
            now = (await queue(api))["counts"]
            theirs_now = (await queue(api, tenant=OTHER_TENANT))["counts"]
            return bool(
                (now["active"], now["completed"], now["failed"]) == (1, 2, 1)
                and theirs_now["completed"] == 5
            )

        await eventually(settled, what="jobs settled")
        paused = await admin_post(api, "/queues/test/pause")
        assert paused.status_code == 200
        await post_jobs(api, [echo(10), echo(11), echo(12)])
        delayed = await post_jobs(api, [echo(20, delay_ms=60_000) for _ in range(3)])
        cancel = await api.client.delete(
            f"/jobs/{delayed[0]['id']}", headers=api.auth("a1", TENANT, "admin")
        )
        assert cancel.status_code == 200

        listed = await admin_get(api, "/queues")
        in_tables = status_counts(api, TENANT)
        theirs = await queue(api, tenant=OTHER_TENANT)

    expected = {
        "waiting": 3,
        "delayed": 2,
        "active": 1,
        "completed": 2,
        "failed": 1,
        "cancelled": 1,
    }
    test_queue = next(q for q in listed["items"] if q["name"] == "test")
    assert test_queue["counts"] == expected
    assert test_queue["paused"] is True
    assert test_queue["oldest_waiting_age_seconds"] >= 0
    assert in_tables == expected
    assert listed["next_cursor"] is None
    names = {q["name"] for q in listed["items"]}
    assert {"money", "communication", "background", "test"} <= names
    assert all(q["counts"] == ZERO for q in listed["items"] if q["name"] != "test")
    assert theirs["counts"] == ZERO | {"completed": 5}
    assert theirs["paused"] is False
    assert mine[0]["id"] not in str(theirs)


async def test_queue_status_gives_the_oldest_waiting_age_and_samples(api: Api) -> None:
    own = await post_jobs(api, [echo("u1-a"), echo("u1-b")], sub="u1")
    other = await post_jobs(api, [echo("u2")], sub="u2")
    theirs = await post_jobs(api, [echo("older, but another tenant's")], OTHER_TENANT)
    for job, seconds in ((own[0], 90), (theirs[0], 5000)):
        api.sql(
            "UPDATE jobs SET run_at = now() - make_interval(secs => %s), "
            "created_at = now() - make_interval(secs => %s) WHERE id = %s",
            seconds,
            seconds + 1,
            job["id"],
        )

    as_admin = await admin_get(api, "/queues/test/status")
    as_user = await api.client.get("/queues/test/status", headers=api.auth("u1", TENANT, "user"))

    assert 90 <= as_admin["oldest_waiting_age_seconds"] < 150
    assert as_admin["counts"]["waiting"] == 3
    assert as_admin["concurrency"] == 5
    assert "test.echo" in as_admin["job_types"]
    assert {j["id"] for j in as_admin["sample_jobs"]} == {j["id"] for j in own + other}
    assert as_admin["sample_jobs"][0]["id"] == own[0]["id"]  # the oldest first
    assert as_user.status_code == 200
    # A user's samples are its own jobs only (SPEC: a user sees only its jobs).
    assert {j["id"] for j in as_user.json()["sample_jobs"]} == {j["id"] for j in own}


async def test_an_unknown_queue_is_a_404_with_a_suggestion(api: Api) -> None:
    response = await api.client.get("/queues/tset/status", headers=api.auth("a1", TENANT, "admin"))

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert "did you mean 'test'" in response.json()["detail"]
    for path in ("/queues/tset/pause", "/queues/tset/resume", "/queues/tset/clear"):
        assert (await admin_post(api, path)).status_code == 404


async def walk(api: Api, status: str, limit: int, tenant: str = TENANT) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"status": status, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        page = await admin_get(api, "/queues/test/jobs", tenant, **params)
        pages.append([j["id"] for j in page["items"]])
        assert all(j["status"] == status and j["tenant_id"] == tenant for j in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "pagination does not end"


async def test_job_listing_walks_every_job_exactly_once_across_pages(api: Api) -> None:
    # A batch shares one run_at: the id must break the ties.
    first = await batch(api, [echo(i) for i in range(17)])
    second = await post_jobs(api, [echo(i) for i in range(6)])
    await post_jobs(api, [echo("theirs") for _ in range(4)], OTHER_TENANT)
    assert len({j["run_at"] for j in first}) == 1
    by_run_at = sorted(first + second, key=lambda j: (datetime.fromisoformat(j["run_at"]), j["id"]))
    expected = [j["id"] for j in by_run_at]

    pages = await walk(api, "waiting", 5)

    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [i for p in pages for i in p] == expected  # oldest first, each once
    whole = await admin_get(api, "/queues/test/jobs", status="waiting", limit=500)
    assert [j["id"] for j in whole["items"]] == expected
    assert whole["next_cursor"] is None


async def test_listing_finished_jobs_pages_newest_first_without_gaps(api: Api) -> None:
    jobs = await batch(api, [echo(i) for i in range(12)])
    assert (await admin_post(api, "/queues/test/clear")).json()["cancelled"] == 12

    pages = await walk(api, "cancelled", 5)

    ids = [i for p in pages for i in p]
    assert [len(p) for p in pages] == [5, 5, 2]
    assert sorted(ids) == sorted(j["id"] for j in jobs)
    assert len(set(ids)) == 12


async def test_listing_an_exact_multiple_of_the_page_size_ends_cleanly(api: Api) -> None:
    await batch(api, [echo(i) for i in range(10)])

    pages = await walk(api, "waiting", 5)

    assert [len(p) for p in pages] in ([5, 5], [5, 5, 0])
    assert len({i for p in pages for i in p}) == 10


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        base64.urlsafe_b64encode(b"not a cursor").decode(),
        base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|not-a-uuid").decode(),
        "%%%",
    ],
)
async def test_a_bad_cursor_is_a_400(api: Api, cursor: str) -> None:
    response = await api.client.get(
        "/queues/test/jobs",
        params={"cursor": cursor},
        headers=api.auth("a1", TENANT, "admin"),
    )

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    assert "cursor" in response.json()["detail"]


async def test_bad_listing_parameters_are_422(api: Api) -> None:
    headers = api.auth("a1", TENANT, "admin")
    for params in ({"status": "sleeping"}, {"limit": 0}, {"limit": 501}, {"limit": "ten"}):
        response = await api.client.get("/queues/test/jobs", params=params, headers=headers)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"] == PROBLEM


async def test_pause_stops_pick_ups_of_this_tenant_only_and_resume_restarts_them(
    api: Api,
) -> None:
    paused = await admin_post(api, "/queues/test/pause")
    assert paused.status_code == 200
    assert paused.json()["paused"] is True

    async with worker_running(api):
        mine = await post_jobs(api, [echo(i) for i in range(3)])
        await post_jobs(api, [echo(i) for i in range(3)], OTHER_TENANT)

        async def theirs_done() -> bool:
            return bool((await queue(api, tenant=OTHER_TENANT))["counts"]["completed"] == 3)

        await eventually(theirs_done, what="the other tenant's jobs ran")
        # Their jobs ran on this worker meanwhile; give it a few more polls for ours.
        await asyncio.sleep(0.5)
        assert (await queue(api))["counts"] == ZERO | {"waiting": 3}
        assert api.sql(
            "SELECT count(*) FROM jobs WHERE id = ANY(%s::uuid[]) AND attempts = 0",
            [j["id"] for j in mine],
        ) == [(3,)]

        resumed = await admin_post(api, "/queues/test/resume")
        assert resumed.status_code == 200
        assert resumed.json()["paused"] is False

        async def mine_done() -> bool:
            return bool((await queue(api))["counts"]["completed"] == 3)

        await eventually(mine_done, what="resumed jobs ran")


async def test_pause_and_resume_are_idempotent(api: Api) -> None:
    for _ in range(2):
        assert (await admin_post(api, "/queues/test/pause")).json()["paused"] is True
    for _ in range(2):
        assert (await admin_post(api, "/queues/test/resume")).json()["paused"] is False


async def test_clear_cancels_waiting_and_delayed_jobs_of_this_tenant_only(api: Api) -> None:
    mine = await post_jobs(api, [echo(1), echo(2), echo(3, delay_ms=60_000)])
    theirs = await post_jobs(api, [echo(4), echo(5)], OTHER_TENANT)

    response = await admin_post(api, "/queues/test/clear")

    assert response.status_code == 200
    assert response.json() == {"queue": "test", "cancelled": 3}
    assert (await queue(api))["counts"] == ZERO | {"cancelled": 3}
    for job in mine:
        got = await admin_get(api, f"/jobs/{job['id']}")
        assert got["status"] == "cancelled"
        assert "cleared by a1" in got["last_error"]
    assert (await queue(api, tenant=OTHER_TENANT))["counts"] == ZERO | {"waiting": 2}
    assert api.sql("SELECT count(*) FROM jobs WHERE tenant_id = %s", OTHER_TENANT) == [
        (len(theirs),)
    ]
    again = await admin_post(api, "/queues/test/clear")
    assert again.json()["cancelled"] == 0


# --- dead letters ---------------------------------------------------------------------------


async def dead_letters(api: Api) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Fill the DLQ through a real worker: 3 declined cards and 1 upstream 503
    for our tenant, 1 for the other; the worker is stopped before returning."""
    async with worker_running(api):
        mine = await post_jobs(
            api, [failing(), failing(), failing(), failing("retryable", max_attempts=1)]
        )
        theirs = await post_jobs(api, [failing()], OTHER_TENANT)

        async def all_dead() -> bool:
            rows = api.sql("SELECT count(*) FROM dead_letter_jobs")
            return bool(rows[0][0] == 5)

        await eventually(all_dead, what="five dead letters")
    return mine, theirs


async def test_the_dlq_lists_filters_and_pages_dead_letters(api: Api) -> None:
    mine, _ = await dead_letters(api)

    listed = await admin_get(api, "/dlq")
    items = listed["items"]
    assert len(items) == 4
    assert listed["next_cursor"] is None
    assert {i["original_job_id"] for i in items} == {j["id"] for j in mine}
    entry = items[0]
    assert set(entry) >= {"id", "original_job_id", "queue", "type", "data", "error", "attempts"}
    assert entry["tenant_id"] == TENANT
    assert entry["queue"] == "test"
    assert entry["type"] == "test.fail"
    assert entry["replayed_job_id"] is None
    assert [i["failed_at"] for i in items] == sorted((i["failed_at"] for i in items), reverse=True)

    async def ids(**params: Any) -> set[str]:
        return {i["id"] for i in (await admin_get(api, "/dlq", **params))["items"]}

    everything = {i["id"] for i in items}
    declined = {i["id"] for i in items if "card declined" in i["error"]}
    assert len(declined) == 3
    assert await ids(queue="test") == everything
    assert await ids(queue="money") == set()
    assert await ids(type="test.fail") == everything
    assert await ids(type="test.echo") == set()
    assert await ids(error="DECLINED") == declined
    assert await ids(error="upstream 503") == everything - declined
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert await ids(failed_after=future) == set()
    assert await ids(failed_after=past, failed_before=future) == everything
    assert await ids(failed_before=past) == set()

    first = await admin_get(api, "/dlq", limit=3)
    second = await admin_get(api, "/dlq", limit=3, cursor=first["next_cursor"])
    assert [i["id"] for i in first["items"] + second["items"]] == [i["id"] for i in items]
    assert second["next_cursor"] is None
    bad = await api.client.get(
        "/dlq", params={"cursor": "nope"}, headers=api.auth("a1", TENANT, "admin")
    )
    assert bad.status_code == 400


async def test_a_dead_letter_is_read_replayed_once_and_deleted(api: Api) -> None:
    await dead_letters(api)
    entries = (await admin_get(api, "/dlq"))["items"]
    entry = entries[0]
    theirs = api.sql("SELECT id::text FROM dead_letter_jobs WHERE tenant_id = %s", OTHER_TENANT)

    assert await admin_get(api, f"/dlq/{entry['id']}") == entry
    hidden = await api.client.get(f"/dlq/{theirs[0][0]}", headers=api.auth("a1", TENANT, "admin"))
    assert hidden.status_code == 404

    replayed = await admin_post(api, f"/dlq/{entry['id']}/replay")
    assert replayed.status_code == 201, replayed.text
    job = replayed.json()["job"]
    assert replayed.json()["dead_letter_id"] == entry["id"]
    assert job["id"] != entry["original_job_id"]
    assert job["type"] == entry["type"]
    assert job["data"] == entry["data"]
    assert job["status"] == "waiting"
    assert job["created_by"] == "a1"
    after = await admin_get(api, f"/dlq/{entry['id']}")
    assert after["replayed_job_id"] == job["id"]
    assert after["replayed_at"] is not None

    again = await admin_post(api, f"/dlq/{entry['id']}/replay")
    assert again.status_code == 409
    assert job["id"] in again.json()["detail"]
    assert api.sql("SELECT count(*) FROM jobs WHERE tenant_id = %s", TENANT) == [(1,)]

    deleted = await api.client.delete(
        f"/dlq/{entry['id']}", headers=api.auth("a1", TENANT, "admin")
    )
    assert deleted.status_code == 200
    assert deleted.json()["id"] == entry["id"]
    gone = await api.client.get(f"/dlq/{entry['id']}", headers=api.auth("a1", TENANT, "admin"))
    assert gone.status_code == 404
    twice = await api.client.delete(f"/dlq/{entry['id']}", headers=api.auth("a1", TENANT, "admin"))
    assert twice.status_code == 404
    not_theirs = await api.client.delete(
        f"/dlq/{theirs[0][0]}", headers=api.auth("a1", TENANT, "admin")
    )
    assert not_theirs.status_code == 404
    assert api.sql("SELECT count(*) FROM dead_letter_jobs WHERE tenant_id = %s", OTHER_TENANT) == [
        (1,)
    ]
    missing = await admin_post(api, f"/dlq/{entry['original_job_id']}/replay")
    assert missing.status_code == 404


async def test_bulk_replay_dry_run_counts_and_a_real_run_replays(api: Api) -> None:
    await dead_letters(api)

    dry = await admin_post(api, "/dlq/replay", json={"error_contains": "declined"})
    assert dry.status_code == 200, dry.text
    assert dry.json() == {
        "dry_run": True,
        "matched": 3,
        "replayed": [],
        "skipped_already_replayed": 0,
    }
    assert api.sql("SELECT count(*) FROM jobs") == [(0,)]
    assert api.sql("SELECT count(*) FROM dead_letter_jobs WHERE replayed_job_id IS NOT NULL") == [
        (0,)
    ]

    real = await admin_post(
        api, "/dlq/replay", json={"error_contains": "declined", "dry_run": False}
    )
    assert real.status_code == 200, real.text
    body = real.json()
    assert body["dry_run"] is False
    assert body["matched"] == 3
    assert len(body["replayed"]) == 3
    new_ids = {r["job"]["id"] for r in body["replayed"]}
    assert {r[0] for r in api.sql("SELECT id::text FROM jobs")} == new_ids

    everything = await admin_post(api, "/dlq/replay", json={"dry_run": False})
    assert everything.json()["matched"] == 1  # only the 503 is left unreplayed
    left = (await admin_post(api, "/dlq/replay", json={})).json()
    assert left["matched"] == 0
    # The other tenant's dead letter is untouched.
    assert api.sql(
        "SELECT replayed_job_id FROM dead_letter_jobs WHERE tenant_id = %s", OTHER_TENANT
    ) == [(None,)]


async def test_bulk_replay_refuses_unknown_fields(api: Api) -> None:
    response = await admin_post(api, "/dlq/replay", json={"dryrun": False})
    assert response.status_code == 422
    assert "dryrun" in response.json()["detail"]


# --- inbound rate limits ----------------------------------------------------------------------


@pytest.fixture
async def limited(open_api: OpenApi) -> Any:
    # 5 reads per minute for the tenant; a user's share (0.5) is 2.
    async with open_api(queue_service_rate_limit_read_per_minute=5) as api:
        yield api


async def test_reads_over_the_limit_get_429_with_retry_after(limited: Api) -> None:
    api = limited
    first = await api.client.get("/queues", headers=api.auth("u1", TENANT, "user"))
    second = await api.client.get("/queues", headers=api.auth("u1", TENANT, "user"))
    third = await api.client.get("/queues", headers=api.auth("u1", TENANT, "user"))

    assert first.status_code == 200
    assert first.headers["RateLimit-Limit"] == "2"
    assert first.headers["RateLimit-Remaining"] == "1"
    assert second.headers["RateLimit-Remaining"] == "0"
    assert third.status_code == 429
    assert third.headers["content-type"] == PROBLEM
    assert 1 <= int(third.headers["Retry-After"]) <= 60
    assert third.headers["RateLimit-Limit"] == "2"
    assert third.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(third.headers["RateLimit-Reset"]) <= 60
    assert "read:u1" in third.json()["detail"]

    # Other users share the tenant's 5.
    assert (
        await api.client.get("/queues", headers=api.auth("u2", TENANT, "user"))
    ).status_code == 200
    assert (
        await api.client.get("/queues", headers=api.auth("u2", TENANT, "user"))
    ).status_code == 200
    over = await api.client.get("/queues", headers=api.auth("u3", TENANT, "user"))
    assert over.status_code == 429
    assert "'read'" in over.json()["detail"]
    # Another tenant has its own windows.
    other = await api.client.get("/queues", headers=api.auth("u1", OTHER_TENANT, "user"))
    assert other.status_code == 200


async def test_the_status_shows_the_count_and_reset_starts_afresh(limited: Api) -> None:
    api = limited
    for sub in ("u1", "u1", "u2", "u2", "u3", "u3"):
        await api.client.get("/queues", headers=api.auth(sub, TENANT, "user"))
    assert (
        await api.client.get("/queues", headers=api.auth("u4", TENANT, "user"))
    ).status_code == 429

    async def shared() -> bool:
        rows = api.sql(
            "SELECT current_count FROM rate_limits WHERE tenant_id = %s AND key = 'read'", TENANT
        )
        return rows == [(7,)]

    await eventually(shared, what="the counts shared through PostgreSQL")

    status = await api.client.get(
        "/rate-limits/status/read", headers=api.auth("a1", TENANT, "admin")
    )
    assert status.status_code == 200, status.text
    window = status.json()
    assert window["key"] == "read"
    assert window["limit"] == 5
    assert window["current_count"] == 7
    assert window["remaining"] == 0
    assert window["window_seconds"] == 60
    assert window["reset_at"] is not None

    one_user = await api.client.get(
        "/rate-limits/status/read:u2", headers=api.auth("a2", TENANT, "admin")
    )
    assert one_user.json()["limit"] == 2
    assert one_user.json()["current_count"] == 2

    reset = await api.client.post(
        "/rate-limits/reset/read", headers=api.auth("a3", TENANT, "admin")
    )
    assert reset.status_code == 200
    assert reset.json()["current_count"] == 0
    assert reset.json()["remaining"] == 5

    # u4 has one request in its own window: the tenant's window starts afresh.
    after = await api.client.get("/queues", headers=api.auth("u4", TENANT, "user"))
    assert after.status_code == 200, after.text
    again = await api.client.get(
        "/rate-limits/status/read", headers=api.auth("a4", TENANT, "admin")
    )
    assert again.json()["current_count"] == 1


async def test_an_unknown_rate_limit_key_is_a_404(api: Api) -> None:
    headers = api.auth("a1", TENANT, "admin")
    for key in ("bogus", "read:", "nope:u1"):
        assert (
            await api.client.get(f"/rate-limits/status/{key}", headers=headers)
        ).status_code == 404
        assert (
            await api.client.post(f"/rate-limits/reset/{key}", headers=headers)
        ).status_code == 404
