"""POST /jobs is served as a direct route (api/direct.py, decision 0027):
handed to its handler before FastAPI's router. A client must not be able to
tell: the same OpenAPI declaration, the same headers, the same JSON for a
job as the routed endpoints give, the same problem bodies for errors."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from tests.api.conftest import TENANT, Api

ECHO = {"type": "test.echo", "data": {"value": "hello"}}


async def test_post_jobs_is_documented_with_its_body_responses_and_security(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    operation = document["paths"]["/jobs"]["post"]

    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/EnqueueBody"}
    assert {"type", "data", "idempotency_key"} <= set(
        document["components"]["schemas"]["EnqueueBody"]["properties"]
    )
    assert operation["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobOut"
    }
    assert {"200", "401", "403", "409", "422", "429"} <= set(operation["responses"])
    assert operation["security"] == [{"BearerJWT": []}, {"ServiceHMAC": []}]


async def test_an_enqueue_answers_the_job_as_the_routed_endpoints_show_it(api: Api) -> None:
    headers = {**api.auth("u1", TENANT, "user"), "x-request-id": "direct-route-1"}
    created = await api.client.post("/jobs", json=ECHO, headers=headers)

    assert created.status_code == 201
    assert created.headers["content-type"] == "application/json"
    assert created.headers["x-request-id"] == "direct-route-1"
    assert int(created.headers["RateLimit-Remaining"]) >= 0
    shown = await api.client.get(f"/jobs/{created.json()['id']}", headers=headers)
    assert shown.status_code == 200
    assert created.json() == shown.json()
    assert created.json()["request_id"] == "direct-route-1"


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, ECHO, 401),
        ({"content-type": "application/json"}, b'{"type": ', 400),
        ({"content-type": "text/plain"}, b"{}", 415),
        ({"content-type": "application/json"}, {"type": "test.echo"}, 422),
        ({"content-type": "application/json"}, {**ECHO, "queue": "nope"}, 422),
    ],
    ids=["no-credentials", "bad-json", "not-json", "missing-field", "unknown-queue"],
)
async def test_a_refused_enqueue_is_a_problem_like_any_routes(
    api: Api, headers: dict[str, str], body: Any, status: int
) -> None:
    if status != 401:
        headers = {**headers, **api.auth("u1", TENANT, "user")}
    content = body if isinstance(body, bytes) else None
    response = await api.client.post(
        "/jobs", content=content, json=None if content else body, headers=headers
    )

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["instance"] == "/jobs"
    assert problem["request_id"] == response.headers["x-request-id"]
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    assert api.job_count() == 0


async def test_other_methods_and_paths_still_go_through_the_router(api: Api) -> None:
    headers = api.auth("u1", TENANT, "admin")

    assert (await api.client.get("/jobs", headers=headers)).status_code == 405
    batch = await api.client.post("/jobs/batch", json={"jobs": [ECHO]}, headers=headers)
    assert batch.status_code == 201


def _post_head(api: Api, length: int) -> bytes:
    token = api.auth("u1", TENANT, "user")["Authorization"]
    return (
        f"POST /jobs HTTP/1.1\r\nHost: test\r\nAuthorization: {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return int(head.split(b" ", 2)[1]), await reader.readexactly(length)


@pytest.mark.slow
async def test_a_client_gone_before_its_body_arrived_writes_nothing_and_logs_no_error(
    live_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(ECHO).encode()
    host, port = live_api.base_url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(_post_head(live_api, len(body)) + body[:10])  # half a body, then gone
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.5)

    assert live_api.job_count() == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    # And the server still serves.
    assert (
        await live_api.client.post("/jobs", json=ECHO, headers=live_api.auth("u1", TENANT, "user"))
    ).status_code == 201


@pytest.mark.slow
async def test_an_idle_keep_alive_connection_outlasts_a_clients_5_s_expiry(live_api: Api) -> None:
    """The server keeps idle connections longer than clients do (httpx: 5 s),
    so it never closes one under a request the client is sending on it."""
    body = json.dumps(ECHO).encode()
    host, port = live_api.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(_post_head(live_api, len(body)) + body)
        assert (await _response(reader))[0] == 201
        await asyncio.sleep(6.0)  # past uvicorn's own default of 5 s
        writer.write(_post_head(live_api, len(body)) + body)
        assert (await _response(reader))[0] == 201
    finally:
        writer.close()
