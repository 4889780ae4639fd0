"""Hooks around each attempt: where metrics and tracing attach without
editing the executor (Dramatiq's middleware, reduced to what we need).

``before`` runs in the attempt's own task just before the handler, so a
context variable it sets (a tracing span) is current inside the handler;
whatever it returns is handed back to ``after`` with the outcome and the
attempt's duration. A hook that raises is logged and skipped: observing a
job must never change how it ends.
"""

from __future__ import annotations

from typing import Any, Protocol

from queue_service.core.jobs import ClaimedJob
from queue_service.core.outcome import Outcome


class AttemptHook(Protocol):
    def before(self, job: ClaimedJob) -> Any:
        """Called as the attempt starts; the value returned goes to ``after``."""

    def after(self, job: ClaimedJob, outcome: Outcome, duration_seconds: float, state: Any) -> None:
        """Called once the attempt has an outcome (before it is persisted)."""
