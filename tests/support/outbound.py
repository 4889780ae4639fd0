"""A job type that makes one HTTP call through the outbound gate, and the
local HTTP server it calls, which records when each request arrived and how
many were in progress at once (the truth the rate-limit tests check).

Load it beside the test job types in worker processes:
QUEUE_SERVICE_PROCESSORS=tests.support.processors:PROCESSORS,tests.support.outbound:PROCESSORS
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from queue_service.core.retry import RetryPolicy
from queue_service.errors import RetryableError
from queue_service.processors.base import Payload, processor
from queue_service.processors.context import JobContext

PROCESSORS_PATH = "tests.support.outbound:PROCESSORS"


class CallPayload(Payload):
    url: str
    service: str = "testapi"


@processor(
    "test.outbound_call",
    payload=CallPayload,
    queue="test",
    retry=RetryPolicy(3, "fixed", 0.05, 0.05, jitter=False),
)
async def outbound_call(ctx: JobContext, p: CallPayload) -> dict[str, int]:
    """One request through the gate; a 5xx is a retryable failure."""
    async with ctx.deps.gate.slot(p.service, str(ctx.job.id)):
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(p.url, params={"job": str(ctx.job.id)})
        if response.status_code >= 500:
            raise RetryableError(f"upstream {response.status_code}")
    return {"status": response.status_code}


PROCESSORS = [outbound_call]


@dataclass
class Recorder:
    """What the server saw: (arrived, left) per request on its own monotonic
    clock, and the most requests in progress at once."""

    latency: float = 0.0
    status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)
    spans: list[tuple[float, float]] = field(default_factory=list)
    in_progress: int = 0
    max_in_progress: int = 0

    @property
    def arrivals(self) -> list[float]:
        with self.lock:
            return sorted(start for start, _ in self.spans)


@contextmanager
def recording_server(latency: float = 0.0, status: int = 200) -> Iterator[tuple[str, Recorder]]:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) in a thread; yields
    its URL and what it records. ``latency`` is how long each answer takes."""
    recorder = Recorder(latency=latency, status=status)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            arrived = time.monotonic()
            with recorder.lock:
                recorder.in_progress += 1
                recorder.max_in_progress = max(recorder.max_in_progress, recorder.in_progress)
            if recorder.latency:
                time.sleep(recorder.latency)  # the upstream's work, not a wait in a test
            # Counted out before answering: the caller's slot can only be
            # released after the answer, so a next request never overlaps
            # this one merely because this thread was slow to count it out.
            with recorder.lock:
                recorder.in_progress -= 1
                recorder.spans.append((arrived, time.monotonic()))
            self.send_response(recorder.status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="recording-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/call", recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
