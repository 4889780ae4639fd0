"""An in-memory NonceStore for unit tests of request signing (the PostgreSQL
one is tested in tests/integration/test_nonces.py)."""

from __future__ import annotations


class MemoryNonceStore:
    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    async def remember(self, service: str, nonce: str) -> bool:
        if (service, nonce) in self.seen:
            return False
        self.seen.add((service, nonce))
        return True
