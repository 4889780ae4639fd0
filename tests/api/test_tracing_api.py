"""Tracing end to end: POST /jobs, the worker's attempt and the provider call
form one trace with the right parent/child links; with tracing off, nothing
is traced and no trace context is stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from queue_service.core.tracing_config import TracingConfig
from queue_service.observability.tracing import active, setup_tracing
from queue_service.runtime.service import run_until_stopped
from tests.api.conftest import HMAC_SECRET, TENANT, Api, OpenApi
from tests.support.analytics_server import FakeAnalytics
from tests.support.waiting import eventually

TRACK = {"type": "analytics.track", "data": {"event": "ticket.viewed", "user_id": "u-1"}}
# A caller's own trace: continued when tracing is on, ignored when it is off.
CALLER_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
CALLER_TRACEPARENT = f"00-{CALLER_TRACE_ID:032x}-b7ad6b7169203331-01"


@pytest.fixture
def analytics() -> Iterator[FakeAnalytics]:
    with FakeAnalytics("queue-service", HMAC_SECRET) as fake:
        yield fake


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on, every span kept in memory (not installed as the global provider)."""
    spans = InMemorySpanExporter()
    tracing = setup_tracing(TracingConfig(), exporter=spans, install_global=False)
    assert tracing is not None
    try:
        yield spans
    finally:
        tracing.shutdown()


@asynccontextmanager
async def background_worker(api: Api) -> AsyncIterator[None]:
    """The service's own worker wiring (run_until_stopped), background queue only."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_until_stopped(api.runtime, stop, queues=["background"], leader=False)
    )
    try:
        yield
    finally:
        stop.set()
        await task


async def enqueue_and_run(api: Api, headers: dict[str, str]) -> tuple[str, str]:
    """POST an analytics.track job, run it to completion; (job id, request id)."""
    response = await api.client.post(
        "/jobs", json=TRACK, headers={**api.auth("ops", TENANT, "admin"), **headers}
    )
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]

    async def completed() -> bool:
        rows = api.sql("SELECT status FROM finished_jobs WHERE id = %s", job_id)
        return bool(rows) and rows[0][0] == "completed"

    async with background_worker(api):
        await eventually(completed, what="the analytics job to complete")
    return job_id, response.headers["x-request-id"]


def one(spans: list[ReadableSpan], name: str, kind: SpanKind) -> ReadableSpan:
    found = [s for s in spans if s.name == name and s.kind is kind]
    assert len(found) == 1, [(s.name, s.kind) for s in spans]
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_a_trace_runs_from_post_jobs_through_the_attempt_to_the_analytics_call(
    open_api: OpenApi, analytics: FakeAnalytics, exporter: InMemorySpanExporter
) -> None:
    async with open_api(analytics_service_url=analytics.url) as api:
        job_id, request_id = await enqueue_and_run(api, {"traceparent": CALLER_TRACEPARENT})
        stored = api.sql("SELECT trace_context FROM finished_jobs WHERE id = %s", job_id)[0][0]
    assert len(analytics.received) == 1
    spans = list(exporter.get_finished_spans())

    request = one(spans, "POST /jobs", SpanKind.SERVER)
    attempt = one(spans, "attempt analytics.track", SpanKind.CONSUMER)
    call = one(spans, "POST", SpanKind.CLIENT)
    # One trace, the caller's: request -> attempt -> provider call.
    assert {request.context.trace_id, attempt.context.trace_id, call.context.trace_id} == {
        CALLER_TRACE_ID
    }
    assert parent_of(attempt) == request.context.span_id
    assert parent_of(call) == attempt.context.span_id
    url = (call.attributes or {}).get("url.full") or (call.attributes or {}).get("http.url")
    assert str(url) == f"{analytics.url}/api/v1/events/track"
    # What the job row carries is the request span's W3C context.
    assert stored == {"traceparent": f"00-{CALLER_TRACE_ID:032x}-{request.context.span_id:016x}-01"}

    assert request.attributes is not None and attempt.attributes is not None
    assert request.attributes["queue_service.request.id"] == request_id
    assert dict(attempt.attributes) == {
        "messaging.system": "queue_service",
        "messaging.operation.type": "process",
        "messaging.destination.name": "background",
        "messaging.message.id": job_id,
        "queue_service.job.type": "analytics.track",
        "queue_service.job.attempt": 1,
        "queue_service.job.max_attempts": attempt.attributes["queue_service.job.max_attempts"],
        "queue_service.tenant.id": TENANT,
        "queue_service.request.id": request_id,
        "queue_service.job.outcome": "completed",
    }
    # The handler's queries (psycopg, through the pool, prepared) are children
    # of the attempt; the worker loop's own claims and heartbeats are no trace.
    queries = [s for s in spans if (s.attributes or {}).get("db.system") == "postgresql"]
    assert any(parent_of(q) == attempt.context.span_id for q in queries)
    assert all(q.parent is not None for q in queries)


async def test_with_tracing_off_nothing_is_traced_and_no_trace_context_is_stored(
    open_api: OpenApi, analytics: FakeAnalytics, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A recording provider installed globally would catch any span our code
    # made through the OpenTelemetry API with tracing off.
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    assert active() is None

    async with open_api(analytics_service_url=analytics.url) as api:
        job_id, _ = await enqueue_and_run(api, {"traceparent": CALLER_TRACEPARENT})
        stored: Any = api.sql("SELECT trace_context FROM finished_jobs WHERE id = %s", job_id)
    assert len(analytics.received) == 1
    assert stored == [(None,)]
    assert spans.get_finished_spans() == ()
