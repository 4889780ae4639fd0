"""Run one job of a type in-process, on a real database, through the same
executor and outcome writer a worker uses: for plug-in authors' tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from queue_service.core.jobs import Job
from queue_service.core.outcome import Outcome
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime, open_runtime
from queue_service.runtime.worker import Worker
from queue_service.settings import Settings


@dataclass(frozen=True, slots=True)
class JobRun:
    """One attempt: how it ended, and the job as stored afterwards."""

    outcome: Outcome
    job: Job

    @property
    def status(self) -> str:
        """``completed``, ``failed``, ``cancelled``; ``delayed`` after a retry or a snooze."""
        return self.job.status.value

    @property
    def result(self) -> Any:
        return self.job.result

    @property
    def error(self) -> str | None:
        return self.job.last_error


class JobRunner:
    """Enqueue a job and run exactly that attempt: ``run`` from a plain test,
    ``arun`` from an async one. Each call opens the runtime (a small pool)
    and closes it, so it works with any event loop."""

    def __init__(
        self, settings: Settings, conninfo: str, processors: Iterable[object] = ()
    ) -> None:
        self.settings = settings
        self.conninfo = conninfo
        self.processors = list(processors)

    def run(self, job_type: str, data: dict[str, Any] | None = None, **request: Any) -> JobRun:
        return asyncio.run(self.arun(job_type, data, **request))

    async def arun(
        self,
        job_type: str,
        data: dict[str, Any] | None = None,
        *,
        tenant_id: str = "test-tenant",
        **request: Any,
    ) -> JobRun:
        """Enqueue ``job_type`` with ``data`` (other EnqueueRequest fields as
        keywords) and run its first attempt now (it must be due: no delay)."""
        async with self._runtime() as rt:
            done = await rt.manager.enqueue(
                EnqueueRequest(
                    type=job_type,
                    data=data or {},
                    tenant_id=tenant_id,
                    created_by="test",
                    **request,
                )
            )
            return await self._run(rt, job_type, done.job_id)

    def _runtime(self) -> Any:
        return open_runtime(
            self.settings, self.conninfo, extra_processors=self.processors, pool_size=2
        )

    async def _run(self, rt: Runtime, job_type: str, job_id: UUID) -> JobRun:
        queue = rt.registry.processor(job_type).options.queue
        worker = Worker(rt.manager, [rt.registry.queue(queue)], deps=rt.deps)
        claimed = await rt.store.claim(queue, [job_type], 1, worker.worker_id)
        if not claimed or claimed[0].id != job_id:
            ahead = [str(j.id) for j in claimed]
            if claimed:
                await rt.store.release_many([(j.id, j.lease_token) for j in claimed], "test")
            raise AssertionError(
                f"job {job_id} was not the next ready {job_type!r} job (claimed {ahead}):"
                " the runner expects it due now, with no other ready job of the type"
            )
        outcome = await worker.run_claimed(claimed[0])
        return JobRun(outcome, await rt.manager.get(job_id))
