"""The mint job types plus a stand-in for email.send (built elsewhere), so a
mint's follow-up email can be enqueued and asserted as a row
(QUEUE_SERVICE_PROCESSORS=tests.support.mint_jobs:MINT_TEST_PROCESSORS)."""

from __future__ import annotations

from typing import Any

from queue_service.processors.base import Payload, processor
from queue_service.processors.context import JobContext
from queue_service.processors.mints import PROCESSORS as MINT_PROCESSORS


class EmailStandInPayload(Payload):
    to: str
    template: str
    context: dict[str, Any] = {}


@processor("email.send", payload=EmailStandInPayload, queue="communication")
async def email_stand_in(ctx: JobContext, p: EmailStandInPayload) -> None:
    """Never run by these tests (they work the money queue only)."""


MINT_TEST_PROCESSORS: list[object] = [*MINT_PROCESSORS, email_stand_in]
