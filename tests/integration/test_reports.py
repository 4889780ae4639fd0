"""report.generate summarises a tenant's finished work and dead letters over a
period, from the database's truth, and refuses a period it cannot serve."""

from __future__ import annotations

from typing import Any

import pytest

from queue_service.core.jobs import EnqueueRequest, JobStatus
from queue_service.errors import InvalidPayloadError
from queue_service.runtime.service import Runtime
from tests.integration.conftest import WorkerFactory
from tests.support.waiting import eventually


async def run_all(runtime: Runtime, requests: list[EnqueueRequest]) -> list[Any]:
    done = await runtime.manager.enqueue_many(requests)

    async def finished() -> bool:
        jobs = [await runtime.manager.get(d.job_id) for d in done]
        return all(j.status in (JobStatus.COMPLETED, JobStatus.FAILED) for j in jobs)

    await eventually(finished, what="every job finished")
    return [await runtime.manager.get(d.job_id) for d in done]


async def test_a_queue_summary_counts_the_tenants_finished_work(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    run_worker(queues=("test", "background"))
    t1 = [EnqueueRequest(type="test.echo", data={"value": i}, tenant_id="t1") for i in range(3)]
    t1.append(EnqueueRequest(type="test.fail", data={"mode": "permanent"}, tenant_id="t1"))
    other = [EnqueueRequest(type="test.echo", data={"value": 9}, tenant_id="t2")]
    await run_all(runtime, t1 + other)

    [report] = await run_all(
        runtime,
        [
            EnqueueRequest(
                type="report.generate",
                data={"report": "queue_summary", "period": "1h"},
                tenant_id="t1",
            )
        ],
    )
    assert report.status is JobStatus.COMPLETED
    queues = report.result["queues"]
    assert set(queues) == {"test"}  # t2's job and the report itself are not counted
    test = queues["test"]
    assert (test["completed"], test["failed"], test["failure_rate"]) == (3, 1, 0.25)
    by_type = {(t["type"], t["status"]): t["count"] for t in test["types"]}
    assert by_type == {("test.echo", "completed"): 3, ("test.fail", "failed"): 1}


async def test_a_dead_letter_report_groups_failures_by_type(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    run_worker(queues=("test", "background"))
    await run_all(
        runtime,
        [EnqueueRequest(type="test.fail", data={"mode": "permanent"}, tenant_id="t1")] * 2,
    )
    [report] = await run_all(
        runtime,
        [EnqueueRequest(type="report.generate", data={"report": "dead_letters"}, tenant_id="t1")],
    )
    [entry] = report.result["dead_letters"]
    assert (entry["type"], entry["count"], entry["replayed"]) == ("test.fail", 2, 0)
    assert "card declined" in entry["top_error"]


@pytest.mark.parametrize("period", ["0h", "1y", "91d", "24", "-1h"])
async def test_a_period_it_cannot_serve_is_refused_at_enqueue(
    runtime: Runtime, period: str
) -> None:
    with pytest.raises(InvalidPayloadError, match="period"):
        await runtime.manager.enqueue(
            EnqueueRequest(
                type="report.generate",
                data={"report": "queue_summary", "period": period},
                tenant_id="t1",
            )
        )
