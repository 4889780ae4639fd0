"""The error tree: how a processor says what kind of failure it met."""

from __future__ import annotations


class QueueServiceError(Exception):
    """Base of every error this package raises on purpose."""


class JobError(QueueServiceError):
    """Raised by a processor to end an attempt with a failure."""

    retryable: bool = True


class RetryableError(JobError):
    """A transient failure (timeout, 5xx, rate limit): try again after backoff.

    ``delay_seconds`` overrides the job type's backoff for this one retry,
    e.g. from a Retry-After header.
    """

    def __init__(self, message: str, *, delay_seconds: float | None = None) -> None:
        super().__init__(message)
        self.delay_seconds = delay_seconds


class PermanentError(JobError):
    """A failure no retry can fix: the job goes straight to the DLQ.

    ``reason`` names the class (SPEC §3): authentication, forbidden,
    not_found, invalid_request, validation, card_declined, ...
    """

    retryable = False

    def __init__(self, message: str, *, reason: str = "permanent") -> None:
        super().__init__(message)
        self.reason = reason


class Snooze(JobError):
    """Not now: run this job again after ``delay_seconds``, without using an
    attempt (Oban's ``{:snooze, seconds}``). Raised when a rate-limit bucket
    is empty, a provider's circuit breaker is open, or the minting wallet's
    balance is too low. The worker slot is freed at once and the snooze is
    recorded in the job's history with ``reason``.
    """

    def __init__(self, delay_seconds: float, reason: str) -> None:
        super().__init__(f"snoozed for {delay_seconds:g} s: {reason}")
        self.delay_seconds = max(0.0, delay_seconds)
        self.reason = reason


class LeaseLostError(QueueServiceError):
    """The job's lease went to another attempt; this one must not finish it."""


class EnqueueError(QueueServiceError):
    """An enqueue was refused; nothing was written. ``field`` names the
    request field at fault, when one is (what a batch's problem reports)."""

    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        if field is not None:
            self.field = field


class UnknownJobTypeError(EnqueueError):
    """No processor is registered for the job type."""

    field = "type"


class InvalidPayloadError(EnqueueError):
    """The job's data does not match its type's payload model."""

    field = "data"


class IdempotencyConflictError(EnqueueError):
    """The idempotency key is in use for a different payload."""

    field = "idempotency_key"

    def __init__(self, key: str, existing_job_id: str) -> None:
        super().__init__(f"idempotency key {key!r} was used for a different payload")
        self.key = key
        self.existing_job_id = existing_job_id


class JobNotFoundError(QueueServiceError):
    """No job (or DLQ entry) with that id is visible to the caller."""


class InvalidStateError(QueueServiceError):
    """The job is not in a state that allows the operation."""


class StartupError(QueueServiceError):
    """The configuration or the environment stops a command from starting:
    what is wrong (naming the setting) and what to do about it.

    Raised where the failure is found (settings, the store's first connection,
    the HTTP listener); the command line prints it as one or two lines and
    exits with ``exit_code``: 2 when a setting is wrong, 1 when the
    environment is not ready (database down, port in use).
    """

    def __init__(self, problem: str, fix: str, *, exit_code: int = 2) -> None:
        super().__init__(f"{problem}; {fix}" if fix else problem)
        self.problem = problem
        self.fix = fix
        self.exit_code = exit_code
