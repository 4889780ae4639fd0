"""Solana JSON-RPC 2.0 over httpx: the minting wallet's balance (by its public
address; the service never holds a private key) and signature statuses."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson
import structlog

from queue_service.core.base58 import is_solana_address, short_address
from queue_service.errors import JobError, PermanentError, RetryableError
from queue_service.providers.http_failures import failure_for_status, failure_for_transport
from queue_service.providers.status import kind_status
from queue_service.settings import Settings

log = structlog.get_logger("queue_service.providers.solana")

LAMPORTS_PER_SOL = 1_000_000_000
SERVICE = "solana"
TIMEOUT_SECONDS = 10.0
# JSON-RPC errors a node raises while it is unhealthy or behind: the same call
# succeeds later. Every other JSON-RPC error (bad params, unknown method,
# malformed request) is the request's fault, and no retry fixes it.
TRANSIENT_RPC_CODES = frozenset(
    {
        -32603,  # internal error
        -32005,  # node unhealthy / behind
        -32004,  # block not available
        -32014,  # block status not yet available
        -32016,  # minimum context slot not reached
    }
)

# Parse error, invalid request, method not found, invalid params.
REQUEST_FAULT_CODES = frozenset({-32700, -32600, -32601, -32602})


@dataclass(frozen=True, slots=True)
class SignatureStatus:
    """One transaction's status as the cluster reports it."""

    signature: str
    slot: int
    confirmation: str | None  # processed | confirmed | finalized
    err: Any  # None when the transaction succeeded

    @property
    def settled(self) -> bool:
        return self.err is None and self.confirmation in ("confirmed", "finalized")


class Wallet(Protocol):
    """The minting wallet as seen by a job: its balance and the chain's view
    of transactions. Read-only: nothing here can sign."""

    name: str
    development: bool
    address: str

    async def balance_sol(self) -> float: ...

    async def signature_statuses(
        self, signatures: Sequence[str]
    ) -> list[SignatureStatus | None]: ...

    async def aclose(self) -> None: ...


class SolanaRpc:
    """A Solana RPC node, asked about one public address."""

    name = "solana"
    development = False

    def __init__(
        self,
        url: str,
        address: str,
        *,
        timeout: float = TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not is_solana_address(address):
            raise ValueError("SOLANA_WALLET_ADDRESS is not a Solana address (base58, 32 bytes)")
        self.address = address
        self._url = url
        self._ids = itertools.count(1)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), transport=transport, follow_redirects=False
        )

    async def balance_sol(self) -> float:
        result = await self._call("getBalance", [self.address, {"commitment": "confirmed"}])
        lamports = _value(result, "getBalance")
        if not isinstance(lamports, int) or isinstance(lamports, bool) or lamports < 0:
            raise RetryableError("solana getBalance answered without a lamport count")
        return lamports / LAMPORTS_PER_SOL

    async def signature_statuses(self, signatures: Sequence[str]) -> list[SignatureStatus | None]:
        result = await self._call(
            "getSignatureStatuses", [list(signatures), {"searchTransactionHistory": True}]
        )
        values = _value(result, "getSignatureStatuses")
        if not isinstance(values, list) or len(values) != len(signatures):
            raise RetryableError("solana getSignatureStatuses answered a malformed list")
        return [_signature_status(sig, v) for sig, v in zip(signatures, values, strict=True)]

    async def _call(self, method: str, params: list[Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        try:
            response = await self._http.post(
                self._url, content=orjson.dumps(body), headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise failure_for_transport(exc, SERVICE) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        # A JSON-RPC error says more than the status code it came with
        # (nodes answer invalid params with 200, 400 or 500).
        if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
            raise _rpc_error(method, answer["error"], response.status_code)
        failure = failure_for_status(response, SERVICE)
        if failure is not None:
            raise failure
        if not isinstance(answer, dict) or "result" not in answer:
            raise RetryableError(f"solana {method} answered without a JSON-RPC result")
        log.debug("solana call", method=method, address=short_address(self.address))
        return answer["result"]

    async def aclose(self) -> None:
        await self._http.aclose()


def _value(result: Any, method: str) -> Any:
    if not isinstance(result, dict) or "value" not in result:
        raise RetryableError(f"solana {method} answered without a context value")
    return result["value"]


def _signature_status(signature: str, value: Any) -> SignatureStatus | None:
    if value is None:
        return None  # the cluster has not seen it (yet)
    if not isinstance(value, dict):
        raise RetryableError("solana getSignatureStatuses answered a malformed status")
    return SignatureStatus(
        signature=signature,
        slot=int(value.get("slot") or 0),
        confirmation=value.get("confirmationStatus"),
        err=value.get("err"),
    )


def _rpc_error(method: str, error: dict[str, Any], http_status: int) -> JobError:
    code = error.get("code")
    # The node's message may echo the request's parameters, no more: safe to keep.
    message = str(error.get("message", ""))[:200]
    text = f"solana {method}: JSON-RPC error {code}: {message}"
    if code in TRANSIENT_RPC_CODES or (http_status >= 500 and code not in REQUEST_FAULT_CODES):
        return RetryableError(text)
    return PermanentError(text, reason="invalid_request")


def build_wallet(settings: Settings) -> Wallet:
    """The Solana RPC wallet when SOLANA_RPC_URL and SOLANA_WALLET_ADDRESS are
    set, else the development one."""
    if not kind_status(settings, "wallet").development:
        # What selected it:
        assert settings.solana_rpc_url
        assert settings.solana_wallet_address
        wallet = SolanaRpc(settings.solana_rpc_url, settings.solana_wallet_address)
        log.info("solana wallet", address=short_address(wallet.address))
        return wallet
    from queue_service.providers.devmint import DevelopmentWallet

    return DevelopmentWallet(settings.queue_service_dev_wallet_balance_sol)
