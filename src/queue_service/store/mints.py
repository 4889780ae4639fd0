"""Statements of the mint ledger (one mint per ticket) and of the minting
wallet's observed balance (the low-balance signal)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg.rows import class_row

from queue_service.store.db import Conn, Database
from queue_service.store.queries import Q


@dataclass(frozen=True, slots=True)
class MintRecord:
    tenant_id: str
    ticket_id: str
    user_id: str
    event_id: str
    wallet_address: str
    idempotency_key: str
    job_id: UUID
    state: str  # requested | minted | failed
    requests: int
    mint_address: str | None
    signature: str | None
    last_error: str | None
    requested_at: datetime
    minted_at: datetime | None


@dataclass(frozen=True, slots=True)
class WalletBalance:
    address: str
    balance_sol: Decimal
    minimum_sol: Decimal
    observed_at: datetime
    low_since: datetime | None

    @property
    def low(self) -> bool:
        return self.low_since is not None


class MintStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def mint_get(self, tenant: str, ticket: str) -> MintRecord | None:
        async with self.db.connection() as c, c.cursor(row_factory=class_row(MintRecord)) as cur:
            await cur.execute(Q["mint_get"], {"tenant": tenant, "ticket": ticket})
            return await cur.fetchone()

    async def mint_request(
        self,
        *,
        tenant: str,
        ticket: str,
        user: str,
        event: str,
        wallet: str,
        key: str,
        job: UUID,
    ) -> MintRecord | None:
        """The ledger row in state requested (committed before the minting
        call), or None if the ticket is minted already."""
        params: dict[str, Any] = {
            "tenant": tenant,
            "ticket": ticket,
            "user": user,
            "event": event,
            "wallet": wallet,
            "key": key,
            "job": job,
        }
        async with self.db.connection() as c, c.cursor(row_factory=class_row(MintRecord)) as cur:
            await cur.execute(Q["mint_request"], params)
            return await cur.fetchone()

    async def mint_mark_minted(
        self, tenant: str, ticket: str, mint_address: str, signature: str, conn: Conn | None = None
    ) -> bool:
        """Record the mint (pass ``conn=tx.conn`` to join the completing transaction)."""
        params = {
            "tenant": tenant,
            "ticket": ticket,
            "mint_address": mint_address,
            "signature": signature,
        }
        async with self.db.connection(conn) as c:
            cur = await c.execute(Q["mint_mark_minted"], params)
            return await cur.fetchone() is not None

    async def mint_mark_failed(self, tenant: str, ticket: str, error: str) -> None:
        async with self.db.connection() as c:
            await c.execute(
                Q["mint_mark_failed"], {"tenant": tenant, "ticket": ticket, "error": error[:1000]}
            )

    async def mint_count_minted(self) -> int:
        async with self.db.connection() as c:
            cur = await c.execute(Q["mint_count_minted"])
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def wallet_balance_record(
        self, address: str, balance_sol: float, minimum_sol: float
    ) -> WalletBalance:
        """Store the balance just observed; the row says whether it is low and since when."""
        params = {
            "address": address,
            "balance": Decimal(str(balance_sol)),
            "minimum": Decimal(str(minimum_sol)),
        }
        async with self.db.connection() as c, c.cursor(row_factory=class_row(WalletBalance)) as cur:
            await cur.execute(Q["wallet_balance_record"], params)
            row = await cur.fetchone()
        assert row is not None  # an upsert always returns its row
        return row

    async def wallet_balances(self) -> list[WalletBalance]:
        async with self.db.connection() as c, c.cursor(row_factory=class_row(WalletBalance)) as cur:
            await cur.execute(Q["wallet_balances_list"])
            return await cur.fetchall()
