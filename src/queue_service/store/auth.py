"""Statements of service authentication: the single-use nonces of signed requests."""

from __future__ import annotations

from queue_service.store.db import Database
from queue_service.store.queries import Q


class NonceRepository:
    """The PostgreSQL NonceStore: the primary key makes a nonce single-use
    across every API process."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def remember(self, service: str, nonce: str) -> bool:
        async with self.db.connection() as c:
            cur = await c.execute(Q["nonce_remember"], {"service": service, "nonce": nonce})
            return await cur.fetchone() is not None

    async def purge_nonces(self, older_than_seconds: float, limit: int = 1000) -> int:
        """Forget up to ``limit`` nonces older than the window in which a replay
        could still pass the timestamp check (HmacVerifier.nonce_retention_seconds)."""
        async with self.db.connection() as c:
            cur = await c.execute(Q["nonce_purge"], {"seconds": older_than_seconds, "limit": limit})
            row = await cur.fetchone()
            return int(row[0]) if row else 0
