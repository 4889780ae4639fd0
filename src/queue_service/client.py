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
request: pass ``idempotency_key`` to make retrying an enqueue safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import httpx
import orjson

from queue_service.api.auth.principal import parse_identifier
from queue_service.core.signing import sign_request


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
        idempotency_key, run_at or delay_ms, max_attempts. Raises
        httpx.HTTPStatusError for an error response.
        """
        response = await self.request(
            "POST", "/jobs", {"type": job_type, "data": dict(data), **fields}
        )
        response.raise_for_status()
        job: dict[str, Any] = response.json()
        return job

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
