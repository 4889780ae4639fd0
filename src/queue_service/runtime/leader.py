"""Leadership: one elected instance runs the periodic duties (duties/).

Election is a session advisory lock; a dead leader's lock goes with its
connection, and another instance takes over at its next attempt (one
interval). Each duty runs when its own period is due; one duty's bug is
logged and does not stop the others (the rescuer above all).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Protocol

import structlog

from queue_service.runtime.backoff import Backoff, is_transient
from queue_service.store.session import LeaderSession

log = structlog.get_logger("queue_service.leader")


class Duty(Protocol):
    """A periodic job of the leader: rescue, maintenance, alerts, schedules..."""

    name: str
    every_seconds: float  # 0: every leader tick

    async def run(self) -> None:
        """One round; transient database errors propagate (the leader steps
        down and retries), anything else is the duty's own failure."""


class Leader:
    def __init__(
        self, session: LeaderSession, duties: Sequence[Duty], *, interval: float = 5.0
    ) -> None:
        self.session = session
        self.duties = list(duties)
        self.interval = interval
        self.is_leader = False
        self._last_run: dict[str, float] = {}

    async def run(self) -> None:
        backoff = Backoff(first=0.5, cap=self.interval)
        try:
            while True:
                try:
                    await self.tick()
                    backoff.reset()
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    self._step_down()
                    await backoff.wait(log, "leader duties", exc)
                    continue
                await asyncio.sleep(self.interval)
        finally:
            await asyncio.shield(self.session.release())

    async def tick(self) -> None:
        """One election attempt and, if elected, every duty that is due."""
        if not await self.session.try_acquire():
            self._step_down()
            return
        if not self.is_leader:
            self.is_leader = True
            self._last_run.clear()  # a new leader runs everything at once
            log.info("became leader", duties=[d.name for d in self.duties])
        for duty in self.duties:
            now = time.monotonic()
            last = self._last_run.get(duty.name)
            if last is not None and now - last < duty.every_seconds:
                continue
            self._last_run[duty.name] = now
            try:
                await duty.run()
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.exception("leader duty failed; the others go on", duty=duty.name)

    def _step_down(self) -> None:
        if self.is_leader:
            self.is_leader = False
            log.warning("no longer leader")
