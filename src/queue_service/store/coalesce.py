"""Coalesced commits: single-job enqueues that arrive while another insert
is in flight share one transaction and one commit (decision 0019).

An enqueue that finds nothing in flight runs alone at once (no wait when
idle). One that finds an insert in flight joins the open window, which is
flushed as soon as the insert in flight ends, the window holds ``max_jobs``
jobs, or its first job has waited ``window_seconds``, whichever comes first.
A window is one transaction: job_insert once per tenant scope, then COMMIT;
every caller gets its own outcome only after the commit, and a window whose
commit fails fails every caller in it. A statement that fails for one job's
sake (bad data the validation let through) is retried job by job, each in a
savepoint, so one bad job never fails another.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import psycopg

from queue_service.core.jobs import NewJob
from queue_service.store.db import Database
from queue_service.store.enqueue_plan import EnqueuePlan, EnqueueResult, IdempotencyRaceError
from queue_service.store.insert import RACE_ATTEMPTS, insert_alone, insert_planned


@dataclass(slots=True)
class _Waiting:
    job: NewJob
    scope: str | None
    outcome: asyncio.Future[EnqueueResult]


# SQLSTATE classes a statement raises for the data it was given (22: data
# exception, 23: integrity constraint, 42501: row-level security said no):
# one job's fault, so the window is retried job by job.
_ONE_JOBS_FAULT = ("22", "23", "42501")


class Coalescer:
    """Shares commits between the single-job enqueues of one process."""

    def __init__(
        self,
        db: Database,
        window_seconds: float,
        max_jobs: int,
        max_in_flight: int = 4,
    ) -> None:
        self.db = db
        self.window_seconds = window_seconds
        self.max_jobs = max_jobs
        self.enabled = window_seconds > 0 and max_jobs > 1
        # Inserts (alone or windows) in flight at once, each on a pooled
        # connection. A burst on one idempotency key makes every window wait
        # for the one before it (the key's row lock); unbounded, the windows
        # held every connection of the pool and the API's other work timed
        # out waiting for one (CI, 1,000 requests on one key under load: 17
        # answered 503). A window that falls due while the cap holds goes
        # when an insert ends, and grows meanwhile (up to max_jobs).
        self.max_in_flight = max(1, max_in_flight)
        self._pending: list[_Waiting] = []
        self._in_flight = 0
        self._due = False
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        # What happened, for the benchmark and the tests: commits made and
        # the jobs they carried (alone or in windows).
        self.commits = 0
        self.jobs = 0

    async def submit(self, job: NewJob, scope: str | None = None) -> EnqueueResult:
        """Enqueue one job; its outcome once the transaction carrying it committed."""
        if not self.enabled or (self._in_flight == 0 and not self._pending):
            self._in_flight += 1
            try:
                result = await insert_alone(self.db, job, scope)
                self.commits += 1
                self.jobs += 1
                return result
            finally:
                self._in_flight -= 1
                self._slot_freed()
        outcome: asyncio.Future[EnqueueResult] = asyncio.get_running_loop().create_future()
        # Read the outcome even if the caller was cancelled meanwhile, so an
        # error no one awaits is not reported as never retrieved.
        outcome.add_done_callback(_consume)
        self._pending.append(_Waiting(job, scope, outcome))
        if len(self._pending) >= self.max_jobs:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.window_seconds, self._flush)
        # The caller may be cancelled; the window still commits its job.
        return await asyncio.shield(outcome)

    def _slot_freed(self) -> None:
        """An insert ended: the open window goes now if nothing else is in
        flight, or if it fell due while the cap held it back."""
        if self._pending and (self._in_flight == 0 or self._due):
            self._flush()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        if self._in_flight >= self.max_in_flight:
            self._due = True  # _slot_freed sends it
            return
        self._due = False
        window, self._pending = self._pending[: self.max_jobs], self._pending[self.max_jobs :]
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._commit(window))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)
        if self._pending:  # more than one window's worth: the rest waits its turn
            self._timer = asyncio.get_running_loop().call_later(self.window_seconds, self._flush)

    async def _commit(self, window: list[_Waiting]) -> None:
        try:
            results = await self._insert_window(window)
        except Exception as exc:
            # Nothing was acknowledged: the transaction did not commit, or
            # whether it did is unknown (the connection was lost at COMMIT).
            for w in window:
                if not w.outcome.done():
                    w.outcome.set_exception(exc)
        except BaseException:
            for w in window:  # shutting down: no answer at all
                w.outcome.cancel()
            raise
        else:
            self.commits += 1
            self.jobs += len(window)
            for w, result in zip(window, results, strict=True):
                if w.outcome.done():
                    continue
                if isinstance(result, psycopg.Error):
                    w.outcome.set_exception(result)  # this job's own statement failed
                else:
                    w.outcome.set_result(result)
        finally:
            self._in_flight -= 1
            self._slot_freed()

    async def _insert_window(self, window: list[_Waiting]) -> list[EnqueueResult | psycopg.Error]:
        for attempt in range(RACE_ATTEMPTS):
            try:
                try:
                    return await self._one_transaction(window)
                except psycopg.Error as exc:
                    if not (exc.sqlstate or "").startswith(_ONE_JOBS_FAULT) and not isinstance(
                        exc, psycopg.DataError
                    ):
                        raise
                return await self._job_by_job(window)
            except (IdempotencyRaceError, psycopg.errors.DeadlockDetected):
                # A key expired between insert and read-back, or a window
                # that took keys in another order (a caller's batch): the
                # transaction rolled back, so the window is simply sent again.
                if attempt == RACE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _one_transaction(self, window: list[_Waiting]) -> list[EnqueueResult | psycopg.Error]:
        """The window's jobs, one job_insert per tenant scope, one commit."""
        by_scope: dict[str | None, list[int]] = {}
        for i in _lock_order(window):
            by_scope.setdefault(window[i].scope, []).append(i)
        results: list[EnqueueResult | None] = [None] * len(window)
        # One statement with no key to read back (so no race to retry) is its
        # own transaction: BEGIN and COMMIT would be two more round trips.
        alone = len(by_scope) == 1 and all(w.job.idempotency_key is None for w in window)
        async with (
            self.db.connection() as c,
            contextlib.nullcontext() if alone else c.transaction(),
        ):
            for scope, indexes in by_scope.items():
                plan = EnqueuePlan([window[i].job for i in indexes], scope)
                done = await insert_planned(c, plan, alone=False, copy=False)
                for i, result in zip(indexes, done, strict=True):
                    results[i] = result
        return results  # type: ignore[return-value]

    async def _job_by_job(self, window: list[_Waiting]) -> list[EnqueueResult | psycopg.Error]:
        """The window again, each job in its own savepoint: a job whose
        statement fails gets its error, the others still commit together."""
        results: dict[int, EnqueueResult | psycopg.Error] = {}
        async with self.db.connection() as c, c.transaction():
            for i in _lock_order(window):
                w = window[i]
                try:
                    async with c.transaction():
                        plan = EnqueuePlan([w.job], w.scope)
                        done = await insert_planned(c, plan, alone=False, copy=False)
                    results[i] = done[0]
                except psycopg.Error as exc:
                    if c.closed:
                        raise
                    results[i] = exc
        return [results[i] for i in range(len(window))]


def _lock_order(window: list[_Waiting]) -> list[int]:
    """The window's jobs in the order their keys are taken: by scope, tenant
    and key, so two windows in flight never wait on each other's keys in a
    cycle (a deadlock would fail both windows' callers). Stable: a key used
    twice keeps its callers' order, and the first one's job is the one made."""
    return sorted(
        range(len(window)),
        key=lambda i: (
            window[i].scope or "",
            window[i].job.tenant_id,
            window[i].job.idempotency_key or "",
        ),
    )


def _consume(future: asyncio.Future[EnqueueResult]) -> None:
    if not future.cancelled():
        future.exception()
