"""Base58 and the Solana address check used to validate wallets."""

from __future__ import annotations

import hashlib

import pytest

from queue_service.core.base58 import b58decode, b58encode, is_solana_address, short_address


@pytest.mark.parametrize(
    "data", [b"", b"\0", b"\0\0\x01", b"hello world", bytes(range(32)), b"\xff" * 64]
)
def test_base58_round_trips_bytes_with_their_leading_zeros(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


def test_base58_matches_known_vectors() -> None:
    assert b58encode(b"hello world") == "StV1DL6CwTryKyV"
    assert b58encode(b"\0" * 32) == "1" * 32  # Solana's system program


@pytest.mark.parametrize(
    "address",
    [
        "11111111111111111111111111111111",
        "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
        b58encode(hashlib.sha256(b"any key").digest()),
    ],
)
def test_a_base58_public_key_of_32_bytes_is_a_solana_address(address: str) -> None:
    assert is_solana_address(address)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0xde0b295669a9fd93d5f28d9ec85e40f4cb697bae",  # an Ethereum address
        "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5D0",  # '0' is not base58
        b58encode(b"\x01" * 31),
        b58encode(b"\x01" * 33),
        "1" * 5000,
    ],
)
def test_anything_else_is_not_a_solana_address(text: str) -> None:
    assert not is_solana_address(text)


def test_logs_see_an_address_truncated() -> None:
    assert short_address("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA") == "Toke...Q5DA"
