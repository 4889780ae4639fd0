"""Service nonces in PostgreSQL: single use across concurrent requests, scoped per
service, and purged only once they are old."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest

from queue_service.api.auth import AuthError, HmacVerifier, sign_request
from queue_service.store.auth import NonceRepository
from queue_service.store.db import Database

SECRET = "s" * 40


@pytest.fixture
async def nonces(database_url: str) -> AsyncIterator[NonceRepository]:
    db = Database(database_url, min_size=1, max_size=20)
    await db.open()
    try:
        yield NonceRepository(db)
    finally:
        await db.close()


def count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM internal_nonces").fetchone()
    assert row is not None
    return int(row[0])


async def test_a_nonce_is_new_once(nonces: NonceRepository) -> None:
    assert await nonces.remember("order-service", "n-1") is True
    assert await nonces.remember("order-service", "n-1") is False


async def test_nonces_are_scoped_per_service(nonces: NonceRepository) -> None:
    assert await nonces.remember("order-service", "n-1") is True
    assert await nonces.remember("ticket-service", "n-1") is True


async def test_fifty_concurrent_identical_nonces_admit_exactly_one(
    nonces: NonceRepository, database_url: str
) -> None:
    results = await asyncio.gather(
        *(nonces.remember("order-service", "stampede") for _ in range(50))
    )
    assert results.count(True) == 1
    assert count(database_url) == 1


async def test_purge_removes_only_old_nonces(nonces: NonceRepository, database_url: str) -> None:
    for nonce in ("old-1", "old-2", "old-3", "fresh"):
        await nonces.remember("order-service", nonce)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE internal_nonces SET seen_at = now() - interval '10 minutes'"
            " WHERE nonce LIKE 'old-%'"
        )
    assert await nonces.purge_nonces(older_than_seconds=300, limit=2) == 2
    assert await nonces.purge_nonces(older_than_seconds=300) == 1
    assert await nonces.purge_nonces(older_than_seconds=300) == 0
    assert count(database_url) == 1
    # The fresh one is still remembered: purging never reopens a live window.
    assert await nonces.remember("order-service", "fresh") is False


async def test_a_signed_request_replayed_to_another_process_is_refused(
    nonces: NonceRepository,
) -> None:
    # Two API processes share the table, not memory.
    allowed = frozenset({"order-service"})
    first = HmacVerifier({"*": SECRET}, allowed, nonces)
    second = HmacVerifier({"*": SECRET}, allowed, nonces)
    headers = sign_request(SECRET, "order-service", "POST", "/jobs", b"{}")
    assert await first.verify(headers, "POST", "/jobs", b"{}") == "order-service"
    with pytest.raises(AuthError, match="nonce already used"):
        await second.verify(headers, "POST", "/jobs", b"{}")
