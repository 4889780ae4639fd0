"""Waiting out a database outage: exponential, jittered, capped, logged once."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from queue_service.store.errors import is_transient

__all__ = ["Backoff", "is_transient"]


class Backoff:
    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self._first = first
        self._cap = cap
        self._delay = first
        self._failures = 0

    def reset(self) -> None:
        if self._failures:
            self._failures = 0
            self._delay = self._first

    async def wait(self, log: Any, doing: str, exc: BaseException) -> None:
        self._failures += 1
        if self._failures == 1 or self._failures % 20 == 0:
            log.warning(
                "database unavailable, retrying",
                doing=doing,
                error=f"{type(exc).__name__}: {exc}",
                failures=self._failures,
            )
        await asyncio.sleep(self._delay * (0.5 + random.random() / 2))
        self._delay = min(self._delay * 2, self._cap)
