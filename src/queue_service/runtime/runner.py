"""One queue inside a worker process: claim within limits, run, hand off.

The runner claims as many jobs as its free slots allow (queue concurrency
plus prefetch, and each job type's own cap), starts handlers as running
slots free up, and hands every finished attempt to ``settle``.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable
from functools import partial
from typing import Any
from uuid import UUID

import structlog

from queue_service.core.catalog import QueueConfig
from queue_service.core.jobs import ClaimedJob
from queue_service.core.outcome import Outcome
from queue_service.processors.context import job_log
from queue_service.processors.registry import Registry
from queue_service.runtime.backoff import Backoff, is_transient
from queue_service.runtime.executor import Attempt, Executor
from queue_service.store import Store

log = structlog.get_logger("queue_service.runner")

# Writes an outcome; the future is done once it is written (or dropped).
Settle = Callable[[ClaimedJob, Outcome], "asyncio.Future[Any]"]


class QueueRunner:
    def __init__(
        self,
        queue: QueueConfig,
        registry: Registry,
        store: Store,
        executor: Executor,
        settle: Settle,
        worker_id: str,
        poll_interval: float,
    ) -> None:
        self.queue = queue
        self._store = store
        self._executor = executor
        self._settle = settle
        self._worker_id = worker_id
        self._poll_interval = poll_interval
        self._types = registry.types_in_queue(queue.name)
        self._caps = {
            t: c
            for t in self._types
            if (c := registry.processor(t).options.concurrency) is not None
        }
        # Every attempt this runner holds a lease for, until it is settled.
        self.held: dict[UUID, Attempt] = {}
        self._buffer: deque[Attempt] = deque()
        self._running = 0
        self._owned_by_type: Counter[str] = Counter()  # buffered + running
        # Fair queues (decision 0020): claims shared across tenants; the turn
        # goes on after the last tenant served when not all get one.
        self._fair = queue.is_fair
        self._after = ""
        self._wake = asyncio.Event()
        self._maybe_more = True
        # Bumped by every notify(): a hint that lands while a claim is in
        # flight must survive that claim coming back short.
        self._hints = 0
        self._stopping = False
        # Each started attempt's task until it ends, then its settling.
        self._in_flight: set[asyncio.Future[Any]] = set()

    def notify(self) -> None:
        """New work may exist (a notification, a poll, a resume)."""
        self._maybe_more = True
        self._hints += 1
        self._wake.set()

    def stop_claiming(self) -> None:
        self._stopping = True
        self._wake.set()

    @property
    def job_types(self) -> list[str]:
        """The types this runner claims (what its worker advertises)."""
        return list(self._types)

    @property
    def running(self) -> int:
        return self._running

    async def run(self) -> None:
        backoff = Backoff()
        while not self._stopping:
            self._wake.clear()
            limit, types = self._claim_plan()
            if limit > 0 and types and self._maybe_more:
                hints = self._hints
                try:
                    claimed = await self._claim(types, limit)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    await backoff.wait(log, f"claiming from {self.queue.name}", exc)
                    continue
                backoff.reset()
                # A fair claim comes back short when a tenant had less than
                # its share: claim again at once to fill the leftovers.
                full = len(claimed) == limit or (self._fair and len(claimed) > 0)
                self._maybe_more = full or self._hints != hints
                for job in claimed:
                    self._hold(job)
                self._start_ready()
                if self._maybe_more and not self._stopping:
                    continue
            try:
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            except TimeoutError:
                self._maybe_more = True  # the poll: notifications are only hints

    async def _claim(self, types: list[str], limit: int) -> list[ClaimedJob]:
        if not self._fair:
            return await self._store.claim(self.queue.name, types, limit, self._worker_id)
        claimed = await self._store.claim_fair(
            self.queue.name,
            types,
            limit,
            self._worker_id,
            cap=self.queue.tenant_concurrency,
            after=self._after,
        )
        if claimed:
            # The last tenant in the claim's turn order (after the cursor
            # first, then from the start): the next claim starts after it.
            after = self._after
            self._after = max((j.tenant_id for j in claimed), key=lambda t: (t <= after, t))
        return claimed

    def _claim_plan(self) -> tuple[int, list[str]]:
        """How many jobs to claim now, and of which types."""
        owned = self._running + len(self._buffer)
        limit = self.queue.concurrency + self.queue.prefetch - owned
        types = []
        for job_type in self._types:
            cap = self._caps.get(job_type)
            if cap is None:
                types.append(job_type)
                continue
            free = cap - self._owned_by_type[job_type]
            if free > 0:
                types.append(job_type)
                # Never claim more of a capped type than it has room for.
                limit = min(limit, free)
        return limit, types

    def _hold(self, job: ClaimedJob) -> None:
        attempt = Attempt(job)
        self.held[job.id] = attempt
        self._buffer.append(attempt)
        self._owned_by_type[job.type] += 1

    def _start_ready(self) -> None:
        # While draining, nothing new starts: buffered jobs are released.
        while self._buffer and self._running < self.queue.concurrency and not self._stopping:
            attempt = self._buffer.popleft()
            self._running += 1
            task = asyncio.create_task(self._executor.execute(attempt))
            attempt.task = task
            # What happens next runs as callbacks, not as a second task per
            # job: a task costs a creation and a loop turn (decision 0030).
            self._in_flight.add(task)
            task.add_done_callback(partial(self._ended, attempt))

    def _ended(self, attempt: Attempt, task: asyncio.Task[Outcome]) -> None:
        """The handler is done: free its slot, then settle its outcome."""
        self._in_flight.discard(task)
        self._running -= 1
        self._owned_by_type[attempt.job.type] -= 1
        self._start_ready()
        self._wake.set()
        if task.cancelled() or task.exception() is not None:
            # Cancelled from outside (the loop closing), or broken beyond an
            # outcome: nothing to settle. Held no longer, its lease runs out
            # and the rescuer gives the job back.
            self._settled(attempt, task)
            return
        settling = self._settle(attempt.job, task.result())
        self._in_flight.add(settling)
        settling.add_done_callback(partial(self._settled, attempt))

    def _settled(self, attempt: Attempt, settling: asyncio.Future[Any]) -> None:
        self._in_flight.discard(settling)
        self.held.pop(attempt.job.id, None)
        if not settling.cancelled() and (exc := settling.exception()) is not None:
            job_log(log, attempt.job).error(
                "outcome not written; the rescuer will give the job back when its lease ends",
                error=f"{type(exc).__name__}: {exc}",
            )
        if self.queue.tenant_concurrency is not None:
            # Settled: the tenant has room under its cap again (the cap
            # counts active rows, so a claim before this would not see it).
            self._maybe_more = True
            self._wake.set()

    def take_buffered(self) -> list[Attempt]:
        """Remove claimed jobs that have not started (to release them)."""
        taken = list(self._buffer)
        self._buffer.clear()
        for attempt in taken:
            self._owned_by_type[attempt.job.type] -= 1
            self.held.pop(attempt.job.id, None)
        return taken

    def drop_buffered(self, job_id: UUID) -> Attempt | None:
        """Take one not-yet-started job out of the buffer."""
        attempt = self.held.get(job_id)
        if attempt is None or attempt.task is not None:
            return None
        self._buffer.remove(attempt)
        self._owned_by_type[attempt.job.type] -= 1
        del self.held[job_id]
        return attempt

    async def wait_idle(self) -> None:
        """Wait until every started attempt has run and been settled."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)
