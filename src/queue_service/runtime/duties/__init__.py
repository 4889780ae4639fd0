"""The leader's periodic duties, one module each; ``leader_duties`` lists
what an elected instance runs."""

from __future__ import annotations

from queue_service.processors.deps import ProcessorDeps
from queue_service.runtime.duties.alerts import AlertDuty
from queue_service.runtime.duties.coverage import UnservedTypesDuty
from queue_service.runtime.duties.rescue import PruneWorkersDuty, RescueDuty
from queue_service.runtime.duties.schedules import ScheduleDuty
from queue_service.runtime.duties.snapshots import MetricSnapshotDuty
from queue_service.runtime.leader import Duty
from queue_service.runtime.manager import JobManager


def leader_duties(
    manager: JobManager, *, deps: ProcessorDeps | None = None, interval: float = 5.0
) -> list[Duty]:
    """Rescue first: a stalled payment matters more than a report. Alerts
    need the providers (``deps``, the worker's); without them none are sent."""
    duties: list[Duty] = [
        RescueDuty(manager.store),
        PruneWorkersDuty(manager.store),
        ScheduleDuty(manager),
        MetricSnapshotDuty(manager.store),
        UnservedTypesDuty(manager.store, interval),
    ]
    if deps is not None:
        duties.append(AlertDuty(deps.store, deps.settings, deps.providers))
    return duties


__all__ = ["leader_duties"]
