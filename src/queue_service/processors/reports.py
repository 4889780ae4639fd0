"""report.generate: a summary of a tenant's queues (or every tenant's, for the
system tenant) over a period, kept as the job's result."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator

from queue_service.core.catalog import SYSTEM_TENANT
from queue_service.core.jobs import Priority
from queue_service.processors.base import Payload, processor
from queue_service.processors.context import JobContext

_PERIOD = re.compile(r"^([1-9][0-9]{0,3})([mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86_400}
MAX_PERIOD_SECONDS = 90 * 86_400  # the longest retention window of live history


def period_seconds(period: str) -> int:
    """'15m', '24h', '7d' as seconds; at most 90 days."""
    match = _PERIOD.fullmatch(period)
    if match is None:
        raise ValueError("period is a number and a unit: '15m', '24h' or '7d'")
    seconds = int(match[1]) * _UNIT_SECONDS[match[2]]
    if seconds > MAX_PERIOD_SECONDS:
        raise ValueError("period is at most 90 days ('90d')")
    return seconds


def _valid_period(value: str) -> str:
    period_seconds(value)
    return value


class ReportPayload(Payload):
    report: Literal["queue_summary", "dead_letters"]
    period: Annotated[str, AfterValidator(_valid_period)] = "24h"


@processor(
    "report.generate",
    payload=ReportPayload,
    queue="background",
    priority=Priority.LOW,
    timeout_seconds=120,
)
async def generate_report(ctx: JobContext, p: ReportPayload) -> dict[str, Any]:
    """Read-only: a retry simply reads again."""
    seconds = period_seconds(p.period)
    tenant = None if ctx.job.tenant_id == SYSTEM_TENANT else ctx.job.tenant_id
    store = ctx.deps.store
    report: dict[str, Any] = {
        "report": p.report,
        "period": p.period,
        "tenant_id": tenant or "*",
    }
    if p.report == "queue_summary":
        rows = await store.report_finished(tenant, seconds)
        queues: dict[str, dict[str, Any]] = {}
        for row in rows:
            queue = queues.setdefault(row.queue, {"completed": 0, "failed": 0, "cancelled": 0})
            queue[row.status] += row.count
            queue.setdefault("types", []).append(
                {
                    "type": row.type,
                    "status": row.status,
                    "count": row.count,
                    "retries": row.retries,
                    "p50_seconds": _round(row.p50_seconds),
                    "p95_seconds": _round(row.p95_seconds),
                }
            )
        for queue in queues.values():
            done = queue["completed"] + queue["failed"]
            queue["failure_rate"] = round(queue["failed"] / done, 4) if done else 0.0
        report["queues"] = queues
    else:
        report["dead_letters"] = [
            {"type": d.type, "count": d.count, "replayed": d.replayed, "top_error": d.top_error}
            for d in await store.report_dead_letters(tenant, seconds)
        ]
    return report


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


PROCESSORS: list[object] = [generate_report]
