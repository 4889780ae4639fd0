"""Run one attempt: parse the payload, call the handler under its timeout,
and turn whatever happened into an Outcome. Nothing here writes to the store.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import orjson
import structlog
from pydantic import BaseModel, ValidationError

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
from queue_service.core.retry import JitterSource
from queue_service.errors import LeaseLostError, PermanentError, RetryableError, Snooze
from queue_service.observability.redaction import redact_text
from queue_service.processors.base import Processor
from queue_service.processors.context import JobContext, job_log
from queue_service.processors.deps import ProcessorDeps
from queue_service.runtime.hooks import AttemptHook
from queue_service.runtime.lending import EngineSession
from queue_service.runtime.manager import JobManager, format_validation_error

log = structlog.get_logger("queue_service.executor")

StopReason = Literal["cancelled", "lease_lost", "shutdown", "timeout"]
MAX_ERROR_CHARS = 4000


@dataclass(slots=True)
class Attempt:
    """A claimed job while this worker holds it."""

    job: ClaimedJob
    task: asyncio.Task[Outcome] | None = None
    # When the lease was last extended (monotonic): claimed counts as renewed.
    renewed_at: float = field(default_factory=time.monotonic)
    stop_reason: StopReason | None = None
    cancel_detail: str = "cancelled on request"

    def stop(self, reason: StopReason, task: asyncio.Task[Any] | None = None) -> None:
        """Interrupt the running handler; the first reason given wins.
        ``task`` is the one running it when that is not the attempt's own
        (the one-job runner of queue_service.testing runs it in the caller's)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        task = task or self.task
        if task is not None and not task.done():
            task.cancel()


class Executor:
    def __init__(
        self,
        manager: JobManager,
        worker_id: str,
        deps: ProcessorDeps,
        *,
        hooks: Sequence[AttemptHook] = (),
        jitter: JitterSource = random.random,
    ) -> None:
        self.manager = manager
        self.worker_id = worker_id
        self.deps = deps
        self.hooks = tuple(hooks)
        self.jitter = jitter
        self._session = EngineSession(manager)

    async def execute(self, attempt: Attempt) -> Outcome:
        if not self.hooks:
            return await self._execute(attempt)
        job = attempt.job
        states = [_call_hook(job, partial(h.before, job)) for h in self.hooks]
        started = time.perf_counter()
        outcome = await self._execute(attempt)
        duration = time.perf_counter() - started
        for hook, state in zip(self.hooks, states, strict=True):
            _call_hook(job, partial(hook.after, job, outcome, duration, state))
        return outcome

    async def _execute(self, attempt: Attempt) -> Outcome:
        job = attempt.job
        proc = self.manager.registry.processor(job.type)
        try:
            payload = proc.parse(job.data)
        except ValidationError as exc:
            return Failed(_clip(f"invalid payload: {format_validation_error(exc)}"))
        ctx = JobContext(job, self.worker_id, self._session, self.deps)
        # The handler's time limit is one timer that stops the attempt like
        # any other stop reason: a tenth of what asyncio.timeout costs per
        # job (decision 0030), with the same effect on the handler (it sees
        # a cancellation at its next await).
        loop = asyncio.get_running_loop()
        limit = proc.options.timeout_seconds
        timer = loop.call_at(loop.time() + limit, attempt.stop, "timeout", asyncio.current_task())
        try:
            result = await proc.handler(ctx, payload)
        except asyncio.CancelledError:
            if attempt.stop_reason is None:
                raise  # not ours: let the cancellation through
            if attempt.stop_reason == "timeout":
                return self._failure(job, proc, f"timed out after {limit:g} s")
            return self._stopped(attempt)
        except LeaseLostError:
            return LeaseLost()
        except Snooze as exc:
            return Snoozed(exc.delay_seconds, _clip(exc.reason))
        except PermanentError as exc:
            return Failed(_describe(exc, f"permanent ({exc.reason})"))
        except RetryableError as exc:
            return self._failure(job, proc, _describe(exc), exc.delay_seconds)
        except Exception as exc:  # a handler bug must not kill the worker
            job_log(log, job).exception("handler raised")
            return self._failure(job, proc, _describe(exc))
        finally:
            timer.cancel()
        if ctx.completed_in_transaction:
            return CompletedInTransaction()
        return _completed(result)

    def _failure(
        self, job: ClaimedJob, proc: Processor[Any], error: str, delay: float | None = None
    ) -> Outcome:
        if job.attempt >= job.max_attempts:
            return Failed(f"{error} (attempt {job.attempt} of {job.max_attempts})")
        if delay is None:
            delay = proc.options.retry.delay(job.attempt, self.jitter)
        return Retry(delay_seconds=max(0.0, delay), error=error)

    @staticmethod
    def _stopped(attempt: Attempt) -> Outcome:
        if attempt.stop_reason == "cancelled":
            return Cancelled(attempt.cancel_detail)
        if attempt.stop_reason == "lease_lost":
            return LeaseLost()
        return Released()


def _call_hook(job: ClaimedJob, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception:
        job_log(log, job).exception("attempt hook raised; ignored")
        return None


def _describe(exc: BaseException, kind: str | None = None) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if kind:
        text = f"{kind}: {text}"
    return _clip(text)


def _clip(text: str) -> str:
    # Vendor and handler text quotes what it was given (addresses, numbers,
    # keys): redacted before any hook, log, span or row sees it. PostgreSQL
    # text cannot hold NUL; an error message must never make the outcome
    # unwritable.
    return redact_text(text[: MAX_ERROR_CHARS * 2])[:MAX_ERROR_CHARS].replace("\x00", "\\0")


_NO_RESULT = Completed(None)


def _completed(result: Any) -> Outcome:
    if result is None:
        return _NO_RESULT  # most handlers: nothing to check or encode
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    try:
        orjson.dumps(result)
    except TypeError as exc:
        # The work is done; running it again to get a storable result could
        # repeat a side effect, so this is a permanent failure, loudly.
        return Failed(_clip(f"handler returned a result that is not JSON: {exc}"))
    return Completed(result)
