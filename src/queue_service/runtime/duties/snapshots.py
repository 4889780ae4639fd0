"""Per-minute metric snapshots (queue_metrics), the history behind the
dashboard's sparklines and /metrics/json."""

from __future__ import annotations

import structlog

from queue_service.store import Store

log = structlog.get_logger("queue_service.leader")


class MetricSnapshotDuty:
    """Writes the current minute's snapshot once. It looks every 15 s rather
    than every 60: a 60 s period drifts against the clock's minutes (each
    tick comes a little later), so some minutes would get no snapshot; a
    minute already written costs one index probe."""

    name = "metric_snapshots"
    every_seconds = 15.0

    def __init__(self, store: Store) -> None:
        self.store = store

    async def run(self) -> None:
        written = await self.store.take_metric_snapshot()
        if written:
            log.debug("metric snapshot written", rows=written)
