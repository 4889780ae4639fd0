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

from queue_service.errors import RetryableError
from queue_service.providers.http_failures import failure_for_status
from queue_service.providers.internal import InternalClient, required_secret
from queue_service.providers.status import kind_status
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
        self._http = InternalClient(
            base_url, service_name, secret, service=SERVICE, timeout=timeout, transport=transport
        )

    async def mint(self, request: MintRequest) -> MintResult:
        response = await self._http.send(
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
        response = await self._http.send("GET", path, tenant_id)
        if response.status_code == 404:
            return None
        failure = failure_for_status(response, SERVICE)
        if failure is not None:
            raise failure
        return _result(response, ticket_id)

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


def build_minter(settings: Settings) -> Minter:
    """The minting service when MINTING_SERVICE_URL is set, else the development minter."""
    if not kind_status(settings, "minting").development:
        assert settings.minting_service_url  # what selected it
        secret = required_secret(settings, "MINTING_SERVICE_URL")
        log.info("minting service", url=settings.minting_service_url)
        return MintingService(settings.minting_service_url, settings.internal_service_name, secret)
    from queue_service.providers.devmint import DevelopmentMinter

    return DevelopmentMinter()
