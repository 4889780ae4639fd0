"""Base58 (Bitcoin alphabet), as Solana writes addresses and signatures; and
the check that a string names a Solana public key (32 bytes)."""

from __future__ import annotations

from typing import Final

ALPHABET: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX: Final = {c: i for i, c in enumerate(ALPHABET)}
SOLANA_ADDRESS_BYTES: Final = 32
# A 32-byte key is 32 to 44 characters; a longer string is refused before the
# quadratic-ish big-integer work, whatever a caller sends.
_MAX_ADDRESS_CHARS: Final = 44


def b58encode(data: bytes) -> str:
    zeros = len(data) - len(data.lstrip(b"\0"))
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(ALPHABET[r])
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """The bytes ``text`` encodes; ValueError for a character outside the alphabet."""
    n = 0
    for ch in text:
        digit = _INDEX.get(ch)
        if digit is None:
            raise ValueError(f"{ch!r} is not a base58 character")
        n = n * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def is_solana_address(text: str) -> bool:
    """Whether ``text`` is base58 of exactly 32 bytes (a Solana public key)."""
    if not 32 <= len(text) <= _MAX_ADDRESS_CHARS:
        return False
    try:
        return len(b58decode(text)) == SOLANA_ADDRESS_BYTES
    except ValueError:
        return False


def short_address(text: str) -> str:
    """An address for logs: first and last four characters (SPEC §8)."""
    return f"{text[:4]}...{text[-4:]}" if len(text) > 8 else "..."
