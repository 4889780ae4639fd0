"""Time-ordered UUIDs (version 7), so new job ids append to the primary key."""

from __future__ import annotations

import os
import time
import uuid

_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)
_RAND_A = 0xFFF << 64
_RAND_B = 0x3FFF_FFFF_FFFF_FFFF


def uuid7(now_ms: int | None = None) -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then 74 random bits."""
    return uuid7_many(1, now_ms)[0]


def uuid7_many(n: int, now_ms: int | None = None) -> list[uuid.UUID]:
    """``n`` UUIDv7s sharing one timestamp, from one read of the random source."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    head = ((ms & 0xFFFF_FFFF_FFFF) << 80) | _VERSION_AND_VARIANT
    raw = os.urandom(10 * n)
    ids = []
    for k in range(0, 10 * n, 10):
        rand = int.from_bytes(raw[k : k + 10], "big")
        ids.append(uuid.UUID(int=head | ((rand >> 62) << 64 & _RAND_A) | (rand & _RAND_B)))
    return ids
