"""What the engine hands to processor factories: narrow ports, not the store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from queue_service.settings import Settings


class MaintenancePort(Protocol):
    """The purges the maintenance job types run (implemented by the store)."""

    async def purge_finished(
        self,
        days: int,
        prefixes: list[str],
        exclude: list[str],
        archive: bool,
        limit: int = 1000,
    ) -> int: ...

    async def purge_dead_letters(self, days: int, limit: int = 1000) -> int: ...

    async def purge_expired_keys(self, limit: int = 1000) -> int: ...

    async def purge_events(self, days: int, limit: int = 1000) -> int: ...

    async def purge_nonces(self, older_than_seconds: float, limit: int = 1000) -> int: ...


@dataclass(frozen=True, slots=True)
class ProcessorDeps:
    settings: Settings
    maintenance: MaintenancePort
