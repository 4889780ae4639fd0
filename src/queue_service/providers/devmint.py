"""Development stand-ins for the minting wallet and the minting service, used
when SOLANA_RPC_URL / MINTING_SERVICE_URL are unset: nothing leaves the process."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import structlog

from queue_service.core.base58 import b58encode, short_address
from queue_service.providers.minting import MintRequest, MintResult
from queue_service.providers.solana import SignatureStatus

log = structlog.get_logger("queue_service.providers.devmint")


class DevelopmentWallet:
    """Reports a configured balance (QUEUE_SERVICE_DEV_WALLET_BALANCE_SOL) and
    every signature as finalized."""

    name = "development wallet"
    development = True

    def __init__(self, balance_sol: float) -> None:
        self._balance = balance_sol
        self.address = b58encode(hashlib.sha256(b"queue-service development wallet").digest())
        log.warning(
            "development provider: wallet balance is not read from Solana",
            provider=self.name,
            balance_sol=balance_sol,
            address=short_address(self.address),
        )

    async def balance_sol(self) -> float:
        return self._balance

    async def signature_statuses(self, signatures: Sequence[str]) -> list[SignatureStatus | None]:
        return [SignatureStatus(s, 0, "finalized", None) for s in signatures]

    async def aclose(self) -> None:
        return None


class DevelopmentMinter:
    """ "Mints" at once with addresses derived from tenant and ticket, so a
    repeated mint of one ticket yields the same fake mint."""

    name = "development minter"
    development = True

    def __init__(self) -> None:
        self._minted: dict[tuple[str, str], MintResult] = {}
        log.warning(
            "development provider: mints are simulated, nothing is minted on chain",
            provider=self.name,
        )

    async def mint(self, request: MintRequest) -> MintResult:
        key = (request.tenant_id, request.ticket_id)
        if key not in self._minted:
            seed = f"{request.tenant_id}\n{request.ticket_id}".encode()
            self._minted[key] = MintResult(
                ticket_id=request.ticket_id,
                status="minted",
                mint_address=b58encode(hashlib.sha256(b"mint\n" + seed).digest()),
                signature=b58encode(hashlib.sha512(b"signature\n" + seed).digest()),
            )
            log.info(
                "development mint",
                ticket_id=request.ticket_id,
                wallet=short_address(request.wallet_address),
            )
        return self._minted[key]

    async def status(self, tenant_id: str, ticket_id: str) -> MintResult | None:
        return self._minted.get((tenant_id, ticket_id))

    async def aclose(self) -> None:
        return None
