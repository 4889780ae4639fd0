"""What a running job may use besides its payload: settings, the store's
named methods, and the providers. Built once per worker process and handed
to handlers as ``ctx.deps``; declaring a job type needs none of it, so an
API-only process never builds it and never touches a vendor client.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from queue_service.settings import Settings

if TYPE_CHECKING:
    from queue_service.providers import Providers
    from queue_service.store import Store


class OutboundGate(Protocol):
    """The outbound rate limits and circuit breakers (SPEC §5), shared by
    every process through the database."""

    def slot(self, service: str, holder: str) -> AbstractAsyncContextManager[None]:
        """Hold one token and one in-flight slot of ``service`` for one call
        made on behalf of ``holder`` (a job id).

        Raises queue_service.errors.Snooze, before any call is made, when the
        bucket is empty, its in-flight cap is reached, the service is under an
        emergency stop, or its circuit breaker is open. A RetryableError
        leaving the block counts against the breaker; anything else, or no
        error, counts as the service answering.
        """


@dataclass(frozen=True, slots=True)
class ProcessorDeps:
    settings: Settings
    # Processors call the store's named methods (ledgers, locks, purges);
    # they never write SQL of their own outside a JobTransaction.
    store: Store
    providers: Providers
    gate: OutboundGate
