"""A small client for the platform's internal services: HMAC-signed requests.

Usage::

    async with ServiceClient(
        "https://queue.internal", "order-service", secret, tenant_id="venue-7"
    ) as queue:
        job = await queue.enqueue(
            "email.send", {"to": "a@example.com", "template": "receipt"},
            idempotency_key="order-42-receipt",
        )

Each request is signed afresh (new timestamp and nonce), so a retry is a new
request: pass ``idempotency_key`` to make retrying an enqueue safe. An error
answer raises ``ApiError`` with the server's problem details.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx
import orjson

from queue_service.api.auth.principal import parse_identifier
from queue_service.core.signing import sign_request


class ApiError(Exception):
    """An error answer from the API: its RFC 9457 problem details.

    ``errors`` lists bad fields (a batch's with their job ``index``),
    ``retry_after`` the seconds a 429 or 503 asks to wait; ``problem`` is the
    whole body as sent."""

    def __init__(self, response: httpx.Response) -> None:
        problem = _problem_of(response)
        self.status: int = response.status_code
        self.title: str = str(problem.get("title") or response.reason_phrase)
        self.detail: str = str(problem.get("detail") or response.text[:500])
        self.type: str = str(problem.get("type") or "about:blank")
        self.request_id: str | None = problem.get("request_id") or response.headers.get(
            "x-request-id"
        )
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        retry_after = response.headers.get("retry-after", "")
        self.retry_after: int | None = int(retry_after) if retry_after.isdigit() else None
        self.problem: dict[str, Any] = problem
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.status} {self.title}: {self.detail}"
        return f"{text} (request id {self.request_id})" if self.request_id else text


def _problem_of(response: httpx.Response) -> dict[str, Any]:
    """The problem+json body, or nothing if the body is something else (a
    proxy's HTML page, say)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class ServiceClient:
    """Calls the queue-service API as one platform service, for one tenant."""

    def __init__(
        self,
        base_url: str,
        service: str,
        secret: str,
        tenant_id: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.service = service
        self.tenant_id = parse_identifier(tenant_id, "tenant_id")
        self._secret = secret
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )

    async def request(self, method: str, path: str, json: Any = None) -> httpx.Response:
        """Send one signed request; the body is serialised once and those exact
        bytes are hashed, signed and sent."""
        body = b"" if json is None else orjson.dumps(json)
        headers = {"x-tenant-id": self.tenant_id}
        if json is not None:
            headers["content-type"] = "application/json"
        request = self._http.build_request(method, path, content=body or None, headers=headers)
        # raw_path is path and query exactly as they go on the wire, including
        # any prefix from base_url: what the server sees and checks.
        target = request.url.raw_path.decode("latin-1")
        request.headers.update(
            sign_request(self._secret, self.service, request.method, target, body)
        )
        return await self._http.send(request)

    async def enqueue(
        self, job_type: str, data: Mapping[str, Any], /, **fields: Any
    ) -> dict[str, Any]:
        """POST /jobs; the created (or idempotently existing) job as JSON.

        ``fields`` are the optional enqueue fields: queue, priority,
        idempotency_key, run_at or delay_ms, max_attempts. Raises ApiError
        for an error response.
        """
        response = await self.request(
            "POST", "/jobs", {"type": job_type, "data": dict(data), **fields}
        )
        job: dict[str, Any] = _json_or_raise(response)
        return job

    async def enqueue_batch(self, jobs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """POST /jobs/batch: up to 100 jobs (each ``{"type", "data", ...}``),
        all or none; the created jobs in order. Raises ApiError, whose
        ``errors`` name every bad job by index."""
        response = await self.request("POST", "/jobs/batch", {"jobs": [dict(j) for j in jobs]})
        created: list[dict[str, Any]] = _json_or_raise(response)["jobs"]
        return created

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _json_or_raise(response: httpx.Response) -> Any:
    if response.is_error:
        raise ApiError(response)
    return response.json()
