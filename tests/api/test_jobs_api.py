"""/jobs through HTTP: the SPEC §6 job shape, request ids, idempotency,
validation that writes nothing, the body limit, batches, visibility, retry
and cancel."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import httpx
import pytest

from queue_service.api.auth.principal import Role
from tests.api.conftest import OTHER_TENANT, TENANT, Api, worker_running
from tests.support.waiting import eventually

PROBLEM = "application/problem+json"
JOB_FIELDS = {
    "id",
    "tenant_id",
    "queue",
    "type",
    "status",
    "priority",
    "data",
    "attempts",
    "max_attempts",
    "idempotency_key",
    "created_by",
    "created_at",
    "run_at",
    "started_at",
    "finished_at",
    "last_error",
    "result",
}
ECHO = {"type": "test.echo", "data": {"value": "hello"}}


def assert_problem(response: httpx.Response, status: int, detail_pattern: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert re.search(detail_pattern, body["detail"]), body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]


async def enqueue(
    api: Api, body: dict[str, Any], sub: str = "u1", tenant: str = TENANT, *roles: Role
) -> dict[str, Any]:
    response = await api.client.post("/jobs", json=body, headers=api.auth(sub, tenant, *roles))
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


async def as_user(api: Api, body: dict[str, Any], sub: str = "u1") -> dict[str, Any]:
    return await enqueue(api, body, sub, TENANT, "user")


# --- enqueue -------------------------------------------------------------------------------


async def test_enqueue_answers_201_with_every_field_of_the_spec_job(api: Api) -> None:
    body = {
        "type": "test.echo",
        "data": {"value": [1, "two"]},
        "priority": 2,
        "idempotency_key": "shape-1",
        "delay_ms": 60_000,
        "max_attempts": 7,
    }
    response = await api.client.post("/jobs", json=body, headers=api.auth("u1", TENANT, "user"))

    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    assert "Idempotent-Replayed" not in response.headers
    job = response.json()
    assert set(job) >= JOB_FIELDS
    UUID(job["id"])
    assert job["tenant_id"] == TENANT
    assert job["queue"] == "test"
    assert job["type"] == "test.echo"
    assert job["status"] == "delayed"
    assert job["priority"] == 2
    assert job["data"] == {"value": [1, "two"]}
    assert job["attempts"] == 0
    assert job["max_attempts"] == 7
    assert job["idempotency_key"] == "shape-1"
    assert job["created_by"] == "u1"
    assert job["run_at"] > job["created_at"]
    assert job["started_at"] is None
    assert job["finished_at"] is None
    assert job["last_error"] is None
    assert job["result"] is None
    stored = api.sql(
        "SELECT tenant_id, type, priority, max_attempts FROM jobs WHERE id = %s", job["id"]
    )
    assert stored == [(TENANT, "test.echo", 2, 7)]


async def test_a_well_formed_request_id_is_echoed_and_stored_on_the_job(api: Api) -> None:
    headers = {**api.auth("u1", TENANT, "user"), "x-request-id": "req-42.abc:7"}
    response = await api.client.post("/jobs", json=ECHO, headers=headers)

    assert response.status_code == 201
    assert response.headers["x-request-id"] == "req-42.abc:7"
    assert response.json()["request_id"] == "req-42.abc:7"
    stored = api.sql("SELECT request_id FROM jobs WHERE id = %s", response.json()["id"])
    assert stored == [("req-42.abc:7",)]


@pytest.mark.parametrize("given", ["has spaces", "x" * 129, "semi;colon", "<script>"])
async def test_a_malformed_request_id_is_replaced_by_a_fresh_one(api: Api, given: str) -> None:
    headers = {**api.auth("u1", TENANT, "user"), "x-request-id": given}
    response = await api.client.post("/jobs", json=ECHO, headers=headers)

    assert response.status_code == 201
    made = response.headers["x-request-id"]
    assert made != given
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    stored = api.sql("SELECT request_id FROM jobs WHERE id = %s", response.json()["id"])
    assert stored == [(made,)]


async def test_every_response_carries_a_request_id_errors_included(api: Api) -> None:
    for response in (
        await api.client.get("/queues"),
        await api.client.get("/health/live"),
        await api.client.get("/no/such/path"),
        await api.client.post("/jobs", content=b"x" * (1024 * 1024 + 1)),
    ):
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"]), response


async def test_the_same_idempotency_key_replays_the_job_with_200(api: Api) -> None:
    body = {**ECHO, "idempotency_key": "order-7-receipt"}
    first = await as_user(api, body)

    again = await api.client.post("/jobs", json=body, headers=api.auth("u1", TENANT, "user"))

    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first["id"]
    assert api.job_count() == 1


async def test_the_same_idempotency_key_with_another_payload_is_a_409(api: Api) -> None:
    await as_user(api, {**ECHO, "idempotency_key": "k-1"})

    other = {"type": "test.echo", "data": {"value": "different"}, "idempotency_key": "k-1"}
    response = await api.client.post("/jobs", json=other, headers=api.auth("u1", TENANT, "user"))

    assert_problem(response, 409, "k-1")
    assert api.job_count() == 1


async def test_idempotency_keys_are_scoped_to_the_tenant(api: Api) -> None:
    body = {**ECHO, "idempotency_key": "shared"}
    mine = await enqueue(api, body, "u1", TENANT, "user")
    theirs = await enqueue(api, body, "u1", OTHER_TENANT, "user")

    assert mine["id"] != theirs["id"]
    assert api.job_count() == 2


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        pytest.param(
            {"type": "test.nope", "data": {}},
            422,
            r"unknown job type 'test.nope'",
            id="unknown-type",
        ),
        pytest.param(
            {**ECHO, "queue": "no-such-queue"},
            422,
            r"unknown queue 'no-such-queue'",
            id="unknown-queue",
        ),
        pytest.param(
            {**ECHO, "queue": "background"},
            422,
            r"runs on queue 'test'",
            id="queue-of-another-type",
        ),
        pytest.param({**ECHO, "priority": "high"}, 422, r"priority", id="priority-not-int"),
        pytest.param({**ECHO, "priority": 11}, 422, r"priority", id="priority-out-of-range"),
        pytest.param({"type": "test.echo", "data": [1, 2]}, 422, r"data", id="data-not-object"),
        pytest.param({"type": 7, "data": {}}, 422, r"type", id="type-not-string"),
        pytest.param({**ECHO, "delay_ms": "soon"}, 422, r"delay_ms", id="delay-not-int"),
        pytest.param({**ECHO, "run_at": "2030-01-01T00:00:00"}, 422, r"run_at", id="naive-run-at"),
        pytest.param(
            {**ECHO, "run_at": "2030-01-01T00:00:00Z", "delay_ms": 5},
            422,
            r"run_at or delay_ms",
            id="run-at-and-delay",
        ),
        pytest.param({**ECHO, "max_attempts": 0}, 422, r"max_attempts", id="max-attempts-zero"),
        pytest.param(
            {"type": "test.fail", "data": {}}, 422, r"data\.mode", id="missing-data-field"
        ),
        pytest.param(
            {"type": "test.fail", "data": {"mode": 5}}, 422, r"data\.mode", id="data-field-type"
        ),
        pytest.param(
            {"type": "test.echo", "data": {"value": 1, "extra": 2}},
            422,
            r"data\.extra",
            id="unknown-data-field",
        ),
        pytest.param({**ECHO, "colour": "red"}, 422, r"colour", id="unknown-envelope-field"),
        pytest.param({"data": {}}, 422, r"type", id="missing-type"),
        pytest.param({"type": "test.echo"}, 422, r"data", id="missing-data"),
        pytest.param(
            {"type": "test.echo", "data": {"value": "a\u0000b"}}, 422, r"NUL", id="nul-in-data"
        ),
    ],
)
async def test_an_invalid_enqueue_is_a_4xx_problem_and_writes_nothing(
    api: Api, body: dict[str, Any], status: int, detail: str
) -> None:
    response = await api.client.post("/jobs", json=body, headers=api.auth("u1", TENANT, "user"))

    assert_problem(response, status, detail)
    assert response.json()["instance"] == "/jobs"
    assert api.job_count() == 0
    assert api.key_count() == 0


@pytest.mark.parametrize(
    "content", [b"{not json", b'{"type": "test.echo", "data": {}', b"[1, 2", b"\xff\xfe"]
)
async def test_malformed_json_is_a_400_problem(api: Api, content: bytes) -> None:
    headers = {**api.auth("u1", TENANT, "user"), "content-type": "application/json"}
    response = await api.client.post("/jobs", content=content, headers=headers)

    assert_problem(response, 400, "not valid JSON")
    assert api.job_count() == 0


async def test_a_missing_body_is_a_422_problem(api: Api) -> None:
    headers = {**api.auth("u1", TENANT, "user"), "content-type": "application/json"}
    response = await api.client.post("/jobs", headers=headers)

    assert_problem(response, 422, "Field required")
    assert api.job_count() == 0


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_not_sent_as_json_is_a_415_problem_saying_so(
    api: Api, content_type: str | None
) -> None:
    headers = api.auth("u1", TENANT, "user")
    if content_type:
        headers["content-type"] = content_type
    response = await api.client.post("/jobs", content=json.dumps(ECHO), headers=headers)

    assert_problem(response, 415, "Content-Type: application/json")
    assert api.job_count() == 0


def big_body() -> bytes:
    body = json.dumps({"type": "test.echo", "data": {"value": "x" * (1024 * 1024)}}).encode()
    assert len(body) > 1024 * 1024
    return body


async def test_a_body_over_1_mib_with_content_length_is_a_413(api: Api) -> None:
    headers = {**api.auth("u1", TENANT, "user"), "content-type": "application/json"}
    response = await api.client.post("/jobs", content=big_body(), headers=headers)

    assert_problem(response, 413, "1048576 bytes")
    assert api.job_count() == 0


async def test_a_streamed_body_over_1_mib_without_content_length_is_a_413(api: Api) -> None:
    body = big_body()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    headers = {**api.auth("u1", TENANT, "user"), "content-type": "application/json"}
    response = await api.client.post("/jobs", content=chunks(), headers=headers)

    assert response.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "1048576 bytes")
    assert api.job_count() == 0


async def test_a_body_just_under_1_mib_is_accepted(api: Api) -> None:
    body = json.dumps({"type": "test.echo", "data": {"value": "x" * (1024 * 1024 - 100)}})
    assert len(body) <= 1024 * 1024
    headers = {**api.auth("u1", TENANT, "user"), "content-type": "application/json"}
    response = await api.client.post("/jobs", content=body, headers=headers)

    assert response.status_code == 201, response.text


# --- batch ---------------------------------------------------------------------------------


def echo_jobs(n: int) -> list[dict[str, Any]]:
    return [{"type": "test.echo", "data": {"value": i}} for i in range(n)]


async def test_a_batch_is_enqueued_whole_with_201(api: Api) -> None:
    response = await api.client.post(
        "/jobs/batch", json={"jobs": echo_jobs(100)}, headers=api.auth("a1", TENANT, "admin")
    )

    assert response.status_code == 201, response.text
    jobs = response.json()["jobs"]
    assert [j["data"]["value"] for j in jobs] == list(range(100))
    assert all(set(j) >= JOB_FIELDS and j["created_by"] == "a1" for j in jobs)
    assert len({j["id"] for j in jobs}) == 100
    assert api.job_count(TENANT) == 100


async def test_a_batch_with_one_bad_job_writes_none(api: Api) -> None:
    jobs = [*echo_jobs(3), {"type": "test.fail", "data": {}}, *echo_jobs(2)]
    response = await api.client.post(
        "/jobs/batch", json={"jobs": jobs}, headers=api.auth("a1", TENANT, "admin")
    )

    assert_problem(response, 422, r"mode")
    assert api.job_count() == 0


async def test_a_batch_with_one_conflicting_key_writes_none(api: Api) -> None:
    await enqueue(api, {**ECHO, "idempotency_key": "taken"}, "a1", TENANT, "admin")
    jobs = [*echo_jobs(3), {"type": "test.echo", "data": {"value": 9}, "idempotency_key": "taken"}]
    response = await api.client.post(
        "/jobs/batch", json={"jobs": jobs}, headers=api.auth("a1", TENANT, "admin")
    )

    assert_problem(response, 409, "taken")
    assert api.job_count() == 1


async def test_a_batch_of_more_than_100_jobs_is_refused(api: Api) -> None:
    response = await api.client.post(
        "/jobs/batch", json={"jobs": echo_jobs(101)}, headers=api.auth("a1", TENANT, "admin")
    )

    assert response.status_code in (413, 422)
    assert_problem(response, response.status_code, r"100")
    assert api.job_count() == 0


async def test_an_empty_batch_is_refused(api: Api) -> None:
    response = await api.client.post(
        "/jobs/batch", json={"jobs": []}, headers=api.auth("a1", TENANT, "admin")
    )

    assert_problem(response, 422, r"jobs")


# --- visibility ----------------------------------------------------------------------------


async def test_a_user_sees_its_own_job(api: Api) -> None:
    job = await as_user(api, ECHO, "u1")

    response = await api.client.get(f"/jobs/{job['id']}", headers=api.auth("u1", TENANT, "user"))

    assert response.status_code == 200
    assert response.json() == job


async def test_a_user_gets_404_for_another_users_job(api: Api) -> None:
    job = await as_user(api, ECHO, "u1")

    response = await api.client.get(f"/jobs/{job['id']}", headers=api.auth("u2", TENANT, "user"))

    assert_problem(response, 404)


@pytest.mark.parametrize("role", ["admin", "venue_admin"])
async def test_admins_see_every_job_of_their_tenant(api: Api, role: Role) -> None:
    job = await as_user(api, ECHO, "u1")

    response = await api.client.get(f"/jobs/{job['id']}", headers=api.auth("boss", TENANT, role))

    assert response.status_code == 200
    assert response.json()["id"] == job["id"]


@pytest.mark.parametrize("role", ["user", "venue_admin", "admin"])
async def test_another_tenants_job_is_404_for_everyone(api: Api, role: Role) -> None:
    job = await enqueue(api, ECHO, "u1", OTHER_TENANT, "user")

    # The same subject in another tenant: still not the owner.
    response = await api.client.get(f"/jobs/{job['id']}", headers=api.auth("u1", TENANT, role))

    assert_problem(response, 404)


async def test_an_unknown_job_is_404_and_a_bad_id_is_422(api: Api) -> None:
    headers = api.auth("a1", TENANT, "admin")
    missing = await api.client.get(f"/jobs/{UUID(int=5)}", headers=headers)
    bad = await api.client.get("/jobs/not-a-uuid", headers=headers)

    assert_problem(missing, 404)
    assert_problem(bad, 422, "job_id")


async def test_another_users_idempotency_key_is_a_409_without_the_job(api: Api) -> None:
    body = {**ECHO, "idempotency_key": "mine"}
    await as_user(api, body, "u1")

    response = await api.client.post("/jobs", json=body, headers=api.auth("u2", TENANT, "user"))

    assert_problem(response, 409, "mine")
    assert "hello" not in response.text


# --- retry and cancel ----------------------------------------------------------------------


async def wait_for_status(api: Api, job_id: str, status: str) -> dict[str, Any]:
    headers = api.auth("a1", TENANT, "admin")

    async def probe() -> dict[str, Any] | None:
        job: dict[str, Any] = (await api.client.get(f"/jobs/{job_id}", headers=headers)).json()
        return job if job["status"] == status else None

    found = await eventually(probe, what=f"job {job_id} {status}")
    assert found is not None
    return found


async def test_an_admin_retries_a_failed_job(api: Api) -> None:
    job = await as_user(api, {"type": "test.fail", "data": {"mode": "permanent"}})
    async with worker_running(api):
        failed = await wait_for_status(api, job["id"], "failed")
    assert "card declined" in failed["last_error"]
    assert failed["attempts"] == 1

    response = await api.client.post(
        f"/jobs/{job['id']}/retry", headers=api.auth("a1", TENANT, "admin")
    )

    assert response.status_code == 200, response.text
    retried = response.json()
    assert retried["id"] == job["id"]
    assert retried["status"] == "waiting"
    assert retried["attempts"] == 0
    assert retried["finished_at"] is None
    rows = api.sql(
        "SELECT count(*) FROM job_events WHERE job_id = %s AND event = 'retried'", job["id"]
    )
    assert rows == [(1,)]


async def test_retrying_a_waiting_job_is_a_409(api: Api) -> None:
    job = await as_user(api, ECHO)

    response = await api.client.post(
        f"/jobs/{job['id']}/retry", headers=api.auth("a1", TENANT, "admin")
    )

    assert_problem(response, 409, "waiting")


async def test_retrying_another_tenants_job_is_a_404(api: Api) -> None:
    job = await enqueue(api, ECHO, "u1", OTHER_TENANT, "user")
    await api.client.delete(f"/jobs/{job['id']}", headers=api.auth("a", OTHER_TENANT, "admin"))

    response = await api.client.post(
        f"/jobs/{job['id']}/retry", headers=api.auth("a1", TENANT, "admin")
    )

    assert_problem(response, 404)
    assert api.sql("SELECT status FROM finished_jobs WHERE id = %s", job["id"]) == [("cancelled",)]


@pytest.mark.parametrize("role", ["admin", "venue_admin"])
async def test_admins_cancel_a_waiting_job_and_get_the_job(api: Api, role: Role) -> None:
    job = await as_user(api, {**ECHO, "delay_ms": 60_000})

    response = await api.client.delete(f"/jobs/{job['id']}", headers=api.auth("boss", TENANT, role))

    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["id"] == job["id"]
    assert cancelled["status"] == "cancelled"
    assert cancelled["finished_at"] is not None
    assert "boss" in cancelled["last_error"]
    assert api.sql("SELECT count(*) FROM jobs WHERE id = %s", job["id"]) == [(0,)]


async def test_a_cancelled_job_can_be_retried_by_an_admin(api: Api) -> None:
    job = await as_user(api, {**ECHO, "delay_ms": 60_000})
    headers = api.auth("a1", TENANT, "admin")
    await api.client.delete(f"/jobs/{job['id']}", headers=headers)

    response = await api.client.post(f"/jobs/{job['id']}/retry", headers=headers)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "waiting"


async def test_cancelling_a_completed_job_is_a_409(api: Api) -> None:
    job = await as_user(api, ECHO)
    async with worker_running(api):
        completed = await wait_for_status(api, job["id"], "completed")
    assert completed["result"] == {"echo": "hello", "attempt": 1}

    response = await api.client.delete(
        f"/jobs/{job['id']}", headers=api.auth("a1", TENANT, "admin")
    )

    assert_problem(response, 409, "completed")


async def test_a_user_may_not_cancel_even_its_own_job(api: Api) -> None:
    job = await as_user(api, ECHO, "u1")

    response = await api.client.delete(f"/jobs/{job['id']}", headers=api.auth("u1", TENANT, "user"))

    assert_problem(response, 403)
    assert api.sql("SELECT status FROM jobs WHERE id = %s", job["id"]) == [("waiting",)]


async def test_cancelling_another_tenants_job_is_a_404_and_leaves_it(api: Api) -> None:
    job = await enqueue(api, ECHO, "u1", OTHER_TENANT, "user")

    response = await api.client.delete(
        f"/jobs/{job['id']}", headers=api.auth("a1", TENANT, "admin")
    )

    assert_problem(response, 404)
    assert api.sql("SELECT status FROM jobs WHERE id = %s", job["id"]) == [("waiting",)]


async def test_a_streamed_body_over_1_mib_through_the_real_server_is_a_413(
    live_api: Api,
) -> None:
    body = big_body()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    headers = {**live_api.auth("u1", TENANT, "user"), "content-type": "application/json"}
    response = await live_api.client.post("/jobs", content=chunks(), headers=headers)

    assert_problem(response, 413, "1048576 bytes")
    assert live_api.job_count() == 0


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/jobs", {"type": "test.echo", "data": {}, "idempotency_key": "k\u0000"}),
        ("GET", "/dlq?error=a%00b", None),
        ("GET", "/dlq?queue=%00", None),
    ],
)
async def test_a_nul_character_anywhere_is_a_422_and_writes_nothing(
    api: Api, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = await api.client.request(
        method, path, json=body, headers=api.auth("a1", TENANT, "admin")
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "NUL" in response.json()["detail"]
    assert api.job_count() == 0
