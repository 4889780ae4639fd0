"""The platform's queues and retention windows (SPEC §2 and §8)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """A queue and its per-worker-process limits.

    ``prefetch`` lets a worker hold that many claimed jobs beyond its running
    ones, so a claim round trip overlaps the work: worth it for short jobs,
    wrong for long ones (a prefetched job waits behind its own worker).

    ``fair`` shares each claim across the tenants with ready work, so one
    tenant's backlog cannot starve the others; ``tenant_concurrency`` caps one
    tenant's active jobs in this queue across all worker processes (it
    implies ``fair``). Both off by default (decision 0020).
    """

    name: str
    concurrency: int
    prefetch: int = 0
    fair: bool = False
    tenant_concurrency: int | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"queue {self.name!r}: concurrency must be at least 1")
        if self.prefetch < 0:
            raise ValueError(f"queue {self.name!r}: prefetch cannot be negative")
        if self.tenant_concurrency is not None and self.tenant_concurrency < 1:
            raise ValueError(f"queue {self.name!r}: tenant_concurrency must be at least 1")

    @property
    def is_fair(self) -> bool:
        """Whether claims go through the fair statement (a cap implies it)."""
        return self.fair or self.tenant_concurrency is not None


MONEY = QueueConfig("money", concurrency=5)
COMMUNICATION = QueueConfig("communication", concurrency=20)
BACKGROUND = QueueConfig("background", concurrency=10)
SPEC_QUEUES = (MONEY, COMMUNICATION, BACKGROUND)

# The tenant the leader's own jobs (maintenance) belong to; never a user's.
SYSTEM_TENANT = "_system"


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """Finished jobs whose type starts with one of ``prefixes`` (``prefix.``)."""

    prefixes: tuple[str, ...]
    days: int
    archive: bool


RETENTION_RULES = (
    RetentionRule(("payment", "refund", "order"), 90, archive=True),
    RetentionRule(("webhook",), 30, archive=True),
    RetentionRule(("email", "sms"), 7, archive=False),
    RetentionRule(("ticket", "nft"), 365, archive=True),
)
DEFAULT_RETENTION_DAYS = 14
EVENTS_GRACE_DAYS = 1
