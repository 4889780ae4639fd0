"""A worker process: queue runners, batched acknowledgements, heartbeats,
wake-up notifications, and a graceful drain on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from typing import Any
from uuid import UUID

import structlog

from queue_service.core.catalog import QueueConfig
from queue_service.core.jobs import ClaimedJob
from queue_service.core.outcome import (
    Cancelled,
    Completed,
    CompletedInTransaction,
    Failed,
    LeaseLost,
    Outcome,
    Released,
    Retry,
    Snoozed,
)
from queue_service.processors.context import job_log
from queue_service.processors.deps import ProcessorDeps
from queue_service.runtime.backoff import Backoff, is_transient
from queue_service.runtime.completer import Completer
from queue_service.runtime.executor import Attempt, Executor
from queue_service.runtime.hooks import AttemptHook
from queue_service.runtime.manager import JobManager
from queue_service.runtime.runner import QueueRunner
from queue_service.store.jobs import FinalStatus
from queue_service.store.session import CONTROL_CHANNEL, JOBS_CHANNEL, LISTENING, Listener

log = structlog.get_logger("queue_service.worker")

# A write that keeps failing for this long is abandoned: by then the lease
# has expired and the rescuer owns the job, so nothing is lost.
WRITE_DEADLINE_SECONDS = 600.0
HEARTBEAT_TICK_SECONDS = 0.25
WORKER_REGISTER_SECONDS = 10.0


def make_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(2).hex()}"


class Worker:
    def __init__(
        self,
        manager: JobManager,
        queues: list[QueueConfig],
        *,
        deps: ProcessorDeps,
        hooks: Sequence[AttemptHook] = (),
        worker_id: str | None = None,
        listen_conninfo: str | None = None,
        poll_interval: float = 1.0,
        grace_seconds: float = 25.0,
    ) -> None:
        self.manager = manager
        self.store = manager.store
        self.worker_id = worker_id or make_worker_id()
        self.executor = Executor(manager, self.worker_id, deps, hooks=hooks)
        self.completer = Completer(self.store)
        self.runners = {
            q.name: QueueRunner(
                q,
                manager.registry,
                self.store,
                self.executor,
                self._settle,
                self.worker_id,
                poll_interval,
            )
            for q in queues
        }
        self._listen_conninfo = listen_conninfo
        self._grace = grace_seconds
        self._background: set[asyncio.Future[Any]] = set()
        self.processed = 0
        self.failed = 0
        self.snoozed = 0

    async def run(
        self,
        stop: asyncio.Event,
        started: asyncio.Event | None = None,
        force: asyncio.Event | None = None,
    ) -> None:
        """Work until ``stop`` is set, then drain and release. ``started`` is
        set once registered and claiming (what /health/startup waits for);
        ``force`` set while draining cuts the grace period short."""
        await self._register()
        tasks = [asyncio.create_task(r.run(), name=f"runner:{n}") for n, r in self.runners.items()]
        helpers = [
            asyncio.create_task(self.completer.run(), name="completer"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
        ]
        if self._listen_conninfo:
            helpers.append(asyncio.create_task(self._listen_loop(), name="listener"))
        log.info("worker started", worker_id=self.worker_id, queues=sorted(self.runners))
        if started is not None:
            started.set()
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait(
            [stopper, *tasks, *helpers], return_when=asyncio.FIRST_COMPLETED
        )
        crashed = [t for t in done if t is not stopper and t.exception() is not None]
        try:
            await self._drain(tasks, force or asyncio.Event())
        finally:
            for task in [stopper, *tasks, *helpers]:
                task.cancel()
            await asyncio.gather(stopper, *tasks, *helpers, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.store.delete_worker(self.worker_id)
        log.info("worker stopped", worker_id=self.worker_id, processed=self.processed)
        if crashed:
            raise crashed[0].exception()  # type: ignore[misc]

    async def run_claimed(self, job: ClaimedJob) -> Outcome:
        """Run one job this worker already claimed and persist how it ended,
        outside the runners: the one-job runner of queue_service.testing."""
        outcome = await self.executor.execute(Attempt(job))
        flusher = asyncio.create_task(self.completer.run(), name="completer")
        try:
            await self._settle(job, outcome)
            await self.completer.drain()
        finally:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        return outcome

    async def _drain(self, runner_loops: list[asyncio.Task[None]], force: asyncio.Event) -> None:
        """Stop claiming, let running work finish within the grace period (or
        until ``force``), then interrupt the rest and give every unfinished
        job back at once rather than when its lease runs out."""
        for runner in self.runners.values():
            runner.stop_claiming()
        # A claim in flight lands in the buffer: let it, then release it too.
        if runner_loops:
            await _until(asyncio.wait(runner_loops), 10, force)
        await self._release_buffered()
        running = self._running_count()
        if running and not force.is_set():
            log.info(
                f"draining: waiting up to {self._grace:g} s for {_jobs(running)}",
                grace_seconds=self._grace,
                jobs=running,
            )
            await self._wait_running(force)
        idle = asyncio.gather(*(r.wait_idle() for r in self.runners.values()))
        self._interrupt_the_rest(forced=force.is_set())
        if not force.is_set():
            await idle
        elif not await _until(idle, 10, None):
            # A database that does not answer must not hold a forced exit:
            # what is not released here, the rescuer gives back later.
            log.warning("forced exit: some jobs could not be released; the rescuer will")
        if not await _until(self.completer.drain(), 5 if force.is_set() else 30, None):
            log.warning("completions not acknowledged before exit; the rescuer will retry them")
        for task in list(self._background):
            await task

    async def _release_buffered(self) -> None:
        """Give back the jobs claimed but not started."""
        buffered = [a for r in self.runners.values() for a in r.take_buffered()]
        if not buffered:
            return
        released = await self._write(
            lambda: self.store.release_many(
                [(a.job.id, a.job.lease_token) for a in buffered], self.worker_id
            )
        )
        for attempt in buffered:
            if released and attempt.job.id in released:
                job_log(log, attempt.job).info("job released", reason="claimed, not started")

    def _interrupt_the_rest(self, *, forced: bool) -> None:
        """Stop the handlers still running: each ends as Released (settled,
        and logged, by _settle)."""
        left = [a for a in self._attempts() if a.task is not None and not a.task.done()]
        if not left:
            return
        if forced:
            log.warning(f"forcing the exit: releasing {_jobs(len(left))}", jobs=len(left))
        else:
            log.warning(f"grace period over, releasing {_jobs(len(left))}", jobs=len(left))
        for attempt in left:
            attempt.stop("shutdown")

    def _running_count(self) -> int:
        return sum(r.running for r in self.runners.values())

    async def _wait_running(self, force: asyncio.Event) -> None:
        """Wait for running attempts to end within the grace period, saying
        how many are left as each ends; return early when ``force`` is set."""
        deadline = time.monotonic() + self._grace
        forced = asyncio.create_task(force.wait())
        try:
            left = self._running_count()
            while left and not force.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                tasks = [a.task for a in self._attempts() if a.task is not None]
                await asyncio.wait(
                    [forced, *tasks], timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                now_left = sum(1 for t in tasks if not t.done())
                if now_left < left and not force.is_set():
                    log.info(f"draining: {_jobs(now_left)} left", jobs=now_left)
                left = now_left
        finally:
            forced.cancel()

    def _attempts(self) -> Iterator[Attempt]:
        for runner in self.runners.values():
            yield from list(runner.held.values())

    def _settle(self, job: ClaimedJob, outcome: Outcome) -> asyncio.Future[Any]:
        """Persist how an attempt ended, fenced by its lease token; the
        future is done once it is written.

        A success joins the completer's next batch and needs no task of its
        own (decision 0030); every other outcome is written by a task."""
        if isinstance(outcome, Completed):
            acknowledged = self.completer.submit(job.id, job.lease_token, outcome.result)
            acknowledged.add_done_callback(partial(self._acknowledged, job))
            return acknowledged
        return asyncio.ensure_future(self._settle_other(job, outcome))

    def _acknowledged(self, job: ClaimedJob, acknowledged: asyncio.Future[bool]) -> None:
        if acknowledged.cancelled():
            return
        if acknowledged.result():
            self.processed += 1
        else:
            _lease_lost(job)

    async def _settle_other(self, job: ClaimedJob, outcome: Outcome) -> None:
        """Write an outcome other than a success. A job's logger is bound
        only when there is something to say: binding costs more than
        acknowledging a no-op job."""
        held = True
        if isinstance(outcome, Retry):
            job_log(log, job).info(
                "attempt failed, will retry",
                delay_seconds=round(outcome.delay_seconds, 3),
                error=outcome.error,
            )
            held = bool(
                await self._write(
                    lambda: self.store.retry_later(
                        job.id,
                        job.lease_token,
                        outcome.delay_seconds,
                        outcome.error,
                        self.worker_id,
                    )
                )
            )
        elif isinstance(outcome, Snoozed):
            held = bool(
                await self._write(
                    lambda: self.store.snooze(
                        job.id,
                        job.lease_token,
                        outcome.delay_seconds,
                        outcome.reason,
                        self.worker_id,
                    )
                )
            )
            self.snoozed += 1
        elif isinstance(outcome, Failed | Cancelled):
            held = await self._finish(job, outcome)
        elif isinstance(outcome, Released):
            done = await self._write(
                lambda: self.store.release_many([(job.id, job.lease_token)], self.worker_id)
            )
            held = bool(done and job.id in done)
            if held:
                job_log(log, job).info("job released", reason="interrupted by shutdown")
        elif isinstance(outcome, CompletedInTransaction):
            self.processed += 1
        elif isinstance(outcome, LeaseLost):
            held = False
        if not held:
            _lease_lost(job)

    async def _finish(self, job: ClaimedJob, outcome: Failed | Cancelled) -> bool:
        status: FinalStatus
        if isinstance(outcome, Failed):
            status, error = "failed", outcome.error
            self.failed += 1
        else:
            status, error = "cancelled", outcome.reason
        job_log(log, job).warning(f"job {status}", error=error)
        done = await self._write(
            lambda: self.store.finish_many([(job.id, job.lease_token, error)], status)
        )
        return bool(done and job.id in done)

    async def _write(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        backoff = Backoff()
        deadline = time.monotonic() + WRITE_DEADLINE_SECONDS
        while True:
            try:
                return await fn()
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() > deadline:
                    log.exception("could not record a job outcome; the rescuer will")
                    return None
                await backoff.wait(log, "recording a job outcome", exc)

    async def _register(self) -> None:
        await self._write(
            lambda: self.store.upsert_worker(
                self.worker_id,
                socket.gethostname(),
                os.getpid(),
                sorted(self.runners),
                sorted({t for r in self.runners.values() for t in r.job_types}),
            )
        )

    async def _heartbeat_loop(self) -> None:
        """Extend leases a third of the way through them, all in one statement."""
        last_register = time.monotonic()
        while True:
            await asyncio.sleep(HEARTBEAT_TICK_SECONDS)
            now = time.monotonic()
            held = {a.job.id: a for a in self._attempts()}
            due = any(now - a.renewed_at >= a.job.lease_seconds / 3 for a in held.values())
            try:
                if due:
                    alive = await self.store.heartbeat_many(
                        [(a.job.id, a.job.lease_token) for a in held.values()]
                    )
                    self._after_heartbeat(held, alive, now)
                if now - last_register > WORKER_REGISTER_SECONDS:
                    await self._register()
                    last_register = now
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("heartbeat failed", error=str(exc))

    def _after_heartbeat(
        self, held: dict[UUID, Attempt], alive: dict[UUID, bool], renewed_at: float
    ) -> None:
        for job_id, attempt in held.items():
            if job_id not in alive:
                self._lost(attempt)
                continue
            attempt.renewed_at = renewed_at
            if alive[job_id]:
                self.cancel(job_id)

    def _lost(self, attempt: Attempt) -> None:
        if attempt.task is not None:
            attempt.stop("lease_lost")
            return
        runner = self.runners.get(attempt.job.queue)
        if runner is not None:
            runner.drop_buffered(attempt.job.id)

    def cancel(self, job_id: UUID, detail: str = "cancelled on request") -> bool:
        """Stop a held job whose cancellation was requested."""
        for runner in self.runners.values():
            attempt = runner.held.get(job_id)
            if attempt is None:
                continue
            attempt.cancel_detail = detail
            if attempt.task is not None:
                attempt.stop("cancelled")
            elif runner.drop_buffered(job_id) is not None:
                task = self._settle(attempt.job, Cancelled(detail))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            return True
        return False

    async def _listen_loop(self) -> None:
        assert self._listen_conninfo is not None
        listener = Listener(self._listen_conninfo, (JOBS_CHANNEL, CONTROL_CHANNEL))
        backoff = Backoff(first=0.2, cap=10.0)
        while True:
            try:
                async for channel, payload in listener.notifications():
                    if channel == LISTENING:
                        backoff.reset()
                    self._on_notification(channel, payload)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                await backoff.wait(log, "listening for notifications", exc)

    def _on_notification(self, channel: str, payload: str) -> None:
        if channel == LISTENING:
            # Anything sent while we were deaf is found by claiming now.
            for each in self.runners.values():
                each.notify()
        elif channel == JOBS_CHANNEL:
            runner = self.runners.get(payload)
            if runner is not None:
                runner.notify()
        elif channel == CONTROL_CHANNEL and payload.startswith("cancel:"):
            with contextlib.suppress(ValueError):
                self.cancel(UUID(payload.removeprefix("cancel:")))


def _lease_lost(job: ClaimedJob) -> None:
    job_log(log, job).warning("lease lost: another attempt owns the job; this outcome was dropped")


def _jobs(n: int) -> str:
    return f"{n} running job" if n == 1 else f"{n} running jobs"


async def _until(aw: Awaitable[Any], seconds: float, force: asyncio.Event | None) -> bool:
    """Wait for ``aw`` at most ``seconds``, or until ``force`` is set;
    say whether it finished (if not, it is cancelled)."""
    task = asyncio.ensure_future(aw)
    forced = asyncio.create_task(force.wait()) if force is not None else None
    try:
        await asyncio.wait(
            [task] if forced is None else [task, forced],
            timeout=seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
        return task.done()
    finally:
        for each in (task, forced):
            if each is not None and not each.done():
                each.cancel()
