"""What a processor declares: its job type, payload model, queue and policies.

A processor turns a typed payload into a result, or raises RetryableError /
PermanentError (queue_service.errors). It never touches the store or a
vendor SDK directly: providers and the job context do that.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from pydantic import BaseModel, ConfigDict

from queue_service.core.jobs import Priority
from queue_service.core.migration_sets import MigrationSet
from queue_service.core.retry import DEFAULT_RETRY, RetryPolicy

if TYPE_CHECKING:
    from queue_service.processors.context import JobContext

P = TypeVar("P", bound=BaseModel)

# What a plug-in imports from here (MigrationSet: its own tables).
__all__ = [
    "EmptyPayload",
    "JobTypeOptions",
    "MigrationSet",
    "Payload",
    "Processor",
    "processor",
]


class Payload(BaseModel):
    """Base of every payload model: unknown fields are an error (SPEC §7)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EmptyPayload(Payload):
    """For job types that take no data."""


@dataclass(frozen=True, slots=True)
class JobTypeOptions:
    """Per job type policy (SPEC §2 and §3); limits are per worker process."""

    queue: str
    priority: int = Priority.NORMAL
    retry: RetryPolicy = DEFAULT_RETRY
    timeout_seconds: float = 60.0
    lease_seconds: int = 30
    max_stalled: int = 3
    concurrency: int | None = None  # None: the queue's
    idempotency_ttl_seconds: int = 86_400

    def __post_init__(self) -> None:
        if self.lease_seconds < 1 or self.timeout_seconds <= 0:
            raise ValueError("lease_seconds and timeout_seconds must be positive")
        if self.max_stalled < 0:
            raise ValueError("max_stalled cannot be negative")


Handler = Callable[["JobContext", P], Awaitable[Any]]
KeyDeriver = Callable[[P], str | None]


@dataclass(frozen=True, slots=True)
class Processor(Generic[P]):
    """A job type's handler with everything the engine needs to run it."""

    job_type: str
    payload_model: type[P]
    options: JobTypeOptions
    handler: Handler[P]
    # Derives an idempotency key from the payload when the caller gives none
    # (money jobs: SPEC §4).
    derive_key: KeyDeriver[P] | None = field(default=None)

    def parse(self, data: dict[str, Any]) -> P:
        """Validate raw data (raises pydantic.ValidationError)."""
        model = self.payload_model
        if model.__pydantic_complete__:
            # The model's validator itself: half the cost of model_validate's
            # Python wrapper, once per job of every batch.
            return cast(P, model.__pydantic_validator__.validate_python(data))
        return model.model_validate(data)  # builds a model with forward references first


def processor(
    job_type: str,
    *,
    payload: type[P],
    queue: str,
    derive_key: KeyDeriver[P] | None = None,
    **options: Any,
) -> Callable[[Handler[P]], Processor[P]]:
    """Declare a processor::

    @processor("email.send", payload=EmailPayload, queue="communication",
               lease_seconds=15, max_stalled=5, retry=EMAIL_RETRY)
    async def send_email(ctx: JobContext, p: EmailPayload) -> dict[str, str]: ...
    """

    def wrap(handler: Handler[P]) -> Processor[P]:
        return Processor(
            job_type=job_type,
            payload_model=payload,
            options=JobTypeOptions(queue=queue, **options),
            handler=handler,
            derive_key=derive_key,
        )

    return wrap
