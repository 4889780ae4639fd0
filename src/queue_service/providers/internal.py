"""A request to a platform service (minting, analytics), signed as SPEC §6
service auth with this service's own secret, afresh on every send."""

from __future__ import annotations

import httpx

from queue_service.core.signing import sign_request
from queue_service.providers.http_failures import failure_for_transport
from queue_service.settings import Settings


class InternalClient:
    """One platform service over HTTP, no redirects followed. ``service`` names
    it in error messages."""

    def __init__(
        self,
        base_url: str,
        service_name: str,
        secret: str,
        *,
        service: str,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.service = service
        self._service_name = service_name
        self._secret = secret
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )

    async def send(
        self,
        method: str,
        path: str,
        tenant_id: str,
        *,
        body: bytes = b"",
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """The answer, whatever its status; RetryableError if none came."""
        headers = {"x-tenant-id": tenant_id}
        if body:
            headers["content-type"] = "application/json"
        if idempotency_key is not None:
            headers["idempotency-key"] = idempotency_key
        request = self._http.build_request(method, path, content=body or None, headers=headers)
        # The target exactly as it goes on the wire (base path, percent-encoding
        # and all): what the service hashes into the signature it checks.
        target = request.url.raw_path.decode("latin-1")
        request.headers.update(
            sign_request(self._secret, self._service_name, request.method, target, body)
        )
        try:
            return await self._http.send(request)
        except httpx.HTTPError as exc:
            raise failure_for_transport(exc, self.service) from None

    async def aclose(self) -> None:
        await self._http.aclose()


def required_secret(settings: Settings, url_setting: str) -> str:
    """This service's own HMAC secret, which ``url_setting`` being set requires."""
    secret = settings.own_hmac_secret()
    if secret is None:
        raise ValueError(
            f"{url_setting} is set but no HMAC secret is: set INTERNAL_HMAC_SECRET,"
            f" or an INTERNAL_HMAC_SECRETS entry for {settings.internal_service_name!r}"
        )
    return secret
