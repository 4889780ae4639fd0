"""The mint job types with the real email.send beside them, so a mint's
follow-up email is validated by its own payload model and can be asserted as
a row (QUEUE_SERVICE_PROCESSORS=tests.support.mint_jobs:MINT_TEST_PROCESSORS)."""

from __future__ import annotations

from queue_service.processors.messages import PROCESSORS as MESSAGE_PROCESSORS
from queue_service.processors.mints import PROCESSORS as MINT_PROCESSORS

MINT_TEST_PROCESSORS: list[object] = [*MINT_PROCESSORS, *MESSAGE_PROCESSORS]
