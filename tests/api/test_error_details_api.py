"""Errors a caller can act on: ServiceClient raises the server's problem
details, a refused batch names every bad job by index, and a 429 says whose
limit was exceeded, how large it is and when to retry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from queue_service.client import ApiError
from tests.api.conftest import TENANT, Api, OpenApi

PROBLEM = "application/problem+json"
ECHO = {"type": "test.echo", "data": {"value": 1}}


async def test_the_service_client_raises_the_problem_with_its_request_id(api: Api) -> None:
    client = api.service_client("order-service", TENANT)

    with pytest.raises(ApiError) as raised:
        await client.enqueue("test.echoo", {"value": 1})

    error = raised.value
    assert (error.status, error.title) == (422, "Unprocessable Content")
    assert "unknown job type 'test.echoo'" in error.detail
    assert "did you mean 'test.echo'" in error.detail
    assert error.request_id is not None and len(error.request_id) >= 8
    assert error.problem["status"] == 422
    assert str(error).startswith("422 Unprocessable Content: unknown job type")
    assert error.request_id in str(error)
    assert api.job_count() == 0


async def test_the_service_client_s_batch_error_lists_every_bad_job(api: Api) -> None:
    client = api.service_client("order-service", TENANT)
    jobs = [
        ECHO,
        {"type": "test.nope", "data": {}},
        ECHO,
        {"type": "test.fail", "data": {"mode": 3}},
        {"type": "test.echo", "data": {}, "queue": "nowhere"},
    ]

    with pytest.raises(ApiError) as raised:
        await client.enqueue_batch(jobs)

    error = raised.value
    assert error.status == 422
    assert [(e["index"], e["field"]) for e in error.errors] == [
        (1, "type"),
        (3, "data"),
        (4, "queue"),
    ]
    assert "3 of 5 jobs are invalid, none was enqueued" in error.detail
    assert "jobs[1].type: unknown job type 'test.nope'" in error.detail
    assert "jobs[3].data: data.mode" in error.detail
    assert api.job_count() == 0
    created = await client.enqueue_batch([ECHO, ECHO])
    assert [j["type"] for j in created] == ["test.echo", "test.echo"]


async def test_a_batch_failing_its_schema_names_each_bad_job_by_index(api: Api) -> None:
    jobs = [ECHO, {**ECHO, "priority": 11}, ECHO, {"data": {}}, {**ECHO, "delay_ms": -1}]

    response = await api.client.post(
        "/jobs/batch", json={"jobs": jobs}, headers=api.auth("a1", TENANT, "admin")
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert [(e["index"], e["field"]) for e in problem["errors"]] == [
        (1, "priority"),
        (3, "type"),
        (4, "delay_ms"),
    ]
    assert all(e["detail"] for e in problem["errors"])
    assert api.job_count() == 0


async def test_a_single_job_s_schema_errors_name_their_fields_without_an_index(api: Api) -> None:
    response = await api.client.post(
        "/jobs",
        json={"type": "test.echo", "data": {}, "priority": 0, "max_attempts": 0},
        headers=api.auth("a1", TENANT, "admin"),
    )

    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "priority", "detail": "Input should be greater than or equal to 1"},
        {"field": "max_attempts", "detail": "Input should be greater than or equal to 1"},
    ]


async def test_a_single_job_refused_by_its_type_names_the_field(api: Api) -> None:
    response = await api.client.post(
        "/jobs",
        json={"type": "test.fail", "data": {"mode": 3}},
        headers=api.auth("a1", TENANT, "admin"),
    )

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "data" and "data.mode" in error["detail"]
    assert "index" not in error


async def test_a_batch_reusing_a_key_for_another_payload_names_the_jobs_holding_it(
    api: Api,
) -> None:
    admin = api.auth("a1", TENANT, "admin")
    first = await api.client.post("/jobs", json={**ECHO, "idempotency_key": "k1"}, headers=admin)
    assert first.status_code == 201
    other = {"type": "test.echo", "data": {"value": 2}, "idempotency_key": "k1"}

    response = await api.client.post("/jobs/batch", json={"jobs": [ECHO, other]}, headers=admin)

    assert response.status_code == 409
    assert response.json()["errors"] == [
        {"index": 1, "field": "idempotency_key", "detail": response.json()["detail"]}
    ]


@pytest.fixture
async def limited(open_api: OpenApi) -> AsyncIterator[Api]:
    # 4 enqueues per minute for the tenant; a caller's share (0.5) is 2.
    async with open_api(queue_service_rate_limit_enqueue_per_minute=4) as api:
        yield api


async def test_a_429_names_the_caller_s_share_its_limit_window_and_retry(limited: Api) -> None:
    api = limited
    alice = api.auth("alice", TENANT, "user")
    for _ in range(2):
        assert (await api.client.post("/jobs", json=ECHO, headers=alice)).status_code == 201

    over = await api.client.post("/jobs", json=ECHO, headers=alice)

    assert over.status_code == 429
    problem = over.json()
    retry = int(over.headers["Retry-After"])
    assert problem["rate_limit"] == [
        {
            "scope": "user",
            "key": "enqueue:alice",
            "group": "enqueue",
            "limit": 2,
            "window_seconds": 60,
            "retry_after": retry,
        }
    ]
    assert problem["detail"] == (
        "rate limit exceeded for bucket 'enqueue:alice': user 'alice' (a 0.5 share of the"
        f" tenant's) may make 2 enqueue requests per 60 s; retry after {retry} s"
    )


async def test_a_429_for_the_tenant_says_the_tenant_s_limit_is_spent(limited: Api) -> None:
    api = limited
    client = api.service_client("order-service", TENANT)
    for user in ("u1", "u1", "u2", "u2"):
        answer = await api.client.post("/jobs", json=ECHO, headers=api.auth(user, TENANT, "user"))
        assert answer.status_code == 201

    with pytest.raises(ApiError) as raised:
        await client.enqueue("test.echo", {"value": 1})

    error = raised.value
    assert error.status == 429
    assert error.retry_after is not None and 1 <= error.retry_after <= 60
    assert [w["scope"] for w in error.problem["rate_limit"]] == ["tenant"]
    assert error.detail.startswith(
        f"rate limit exceeded for bucket 'enqueue': tenant '{TENANT}' (all its users and"
        " services together) may make 4 enqueue requests per 60 s"
    )
