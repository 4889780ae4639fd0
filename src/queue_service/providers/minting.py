"""The platform's minting service: mint a ticket's NFT and ask a mint's
status, HMAC-signed as SPEC §6 service auth, with a stable idempotency key.
The shapes below are the contract (docs/providers/minting.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx
import orjson
import structlog

from queue_service.core.signing import sign_request
from queue_service.errors import RetryableError
from queue_service.providers.http_failures import failure_for_status, failure_for_transport
from queue_service.settings import Settings

log = structlog.get_logger("queue_service.providers.minting")

SERVICE = "minting service"
MINT_PATH = "/api/v1/internal/mint"
STATUS_PATH = "/api/v1/internal/mint/{ticket_id}/status"
TIMEOUT_SECONDS = 20.0
MintState = Literal["pending", "minted", "failed"]
_STATES = frozenset({"pending", "minted", "failed"})


@dataclass(frozen=True, slots=True)
class MintRequest:
    tenant_id: str
    ticket_id: str
    user_id: str
    event_id: str
    wallet_address: str
    idempotency_key: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "ticket_id": self.ticket_id,
            "user_id": self.user_id,
            "event_id": self.event_id,
            "wallet_address": self.wallet_address,
            "metadata": self.metadata,
            "idempotency_key": self.idempotency_key,
        }


@dataclass(frozen=True, slots=True)
class MintResult:
    """The minting service's view of one ticket's mint."""

    ticket_id: str
    status: MintState
    mint_address: str | None = None
    signature: str | None = None
    error: str | None = None
    # For ``failed``: whether a new mint request may succeed later.
    retryable: bool = False


class Minter(Protocol):
    name: str
    development: bool

    async def mint(self, request: MintRequest) -> MintResult:
        """Ask for the ticket's mint; the same idempotency key never mints twice."""

    async def status(self, tenant_id: str, ticket_id: str) -> MintResult | None:
        """The ticket's mint, or None if the service has none for it."""

    async def aclose(self) -> None: ...


def status(settings: Settings) -> tuple[str, bool]:
    """(provider name, is development) for /health/ready, building nothing."""
    if settings.minting_service_url:
        return "minting-service", False
    return "development minter", True


class MintingService:
    """The minting service over HTTP, every request signed afresh."""

    name = "minting-service"
    development = False

    def __init__(
        self,
        base_url: str,
        service_name: str,
        secret: str,
        *,
        timeout: float = TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._service_name = service_name
        self._secret = secret
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )

    async def mint(self, request: MintRequest) -> MintResult:
        response = await self._send(
            "POST",
            MINT_PATH,
            request.tenant_id,
            body=orjson.dumps(request.body()),
            idempotency_key=request.idempotency_key,
        )
        failure = failure_for_status(response, SERVICE)
        if failure is not None:
            raise failure
        return _result(response, request.ticket_id)

    async def status(self, tenant_id: str, ticket_id: str) -> MintResult | None:
        path = STATUS_PATH.format(ticket_id=quote(ticket_id, safe=""))
        response = await self._send("GET", path, tenant_id)
        if response.status_code == 404:
            return None
        failure = failure_for_status(response, SERVICE)
        if failure is not None:
            raise failure
        return _result(response, ticket_id)

    async def _send(
        self,
        method: str,
        path: str,
        tenant_id: str,
        *,
        body: bytes = b"",
        idempotency_key: str | None = None,
    ) -> httpx.Response:
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
            raise failure_for_transport(exc, SERVICE) from None

    async def aclose(self) -> None:
        await self._http.aclose()


def _result(response: httpx.Response, ticket_id: str) -> MintResult:
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or answer.get("status") not in _STATES:
        raise RetryableError("the minting service answered without a mint status")
    state = answer["status"]
    mint_address, signature = answer.get("mint_address"), answer.get("signature")
    if state == "minted" and not (isinstance(mint_address, str) and isinstance(signature, str)):
        raise RetryableError("the minting service said minted without a mint address and signature")
    return MintResult(
        ticket_id=str(answer.get("ticket_id", ticket_id)),
        status=state,
        mint_address=mint_address if isinstance(mint_address, str) else None,
        signature=signature if isinstance(signature, str) else None,
        error=str(answer["error"])[:500] if answer.get("error") else None,
        retryable=bool(answer.get("retryable", False)),
    )


def signing_secret(settings: Settings) -> str | None:
    """This service's outbound HMAC secret: its INTERNAL_HMAC_SECRETS entry,
    else INTERNAL_HMAC_SECRET."""
    if settings.internal_hmac_secrets is not None:
        try:
            per_service = orjson.loads(settings.internal_hmac_secrets.get_secret_value())
        except orjson.JSONDecodeError:
            per_service = None
        if isinstance(per_service, dict):
            own = per_service.get(settings.internal_service_name)
            if isinstance(own, str) and own:
                return own
    if settings.internal_hmac_secret is not None:
        return settings.internal_hmac_secret.get_secret_value()
    return None


def build_minter(settings: Settings) -> Minter:
    """The minting service when MINTING_SERVICE_URL is set, else the development minter."""
    if settings.minting_service_url:
        secret = signing_secret(settings)
        if secret is None:
            raise ValueError(
                "MINTING_SERVICE_URL is set but no HMAC secret is: set INTERNAL_HMAC_SECRET,"
                f" or an INTERNAL_HMAC_SECRETS entry for {settings.internal_service_name!r}"
            )
        log.info("minting service", url=settings.minting_service_url)
        return MintingService(settings.minting_service_url, settings.internal_service_name, secret)
    from queue_service.providers.devmint import DevelopmentMinter

    return DevelopmentMinter()
