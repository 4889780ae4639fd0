"""OpenTelemetry tracing: off unless Settings.tracing says otherwise; when on, a
tracer provider with its exporter and the FastAPI, httpx and psycopg
instrumentations, and the W3C trace context a job carries (decision 0015)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from queue_service.core.tracing_config import TracingConfig

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler

log = structlog.get_logger("queue_service.tracing")
# Only traceparent/tracestate are stored with a job, never baggage: baggage is
# free-form caller data and has no business in a jobs table.
JOB_PROPAGATOR = TraceContextTextMapPropagator()
# Probes and scrapes would be most of the spans and none of the insight.
EXCLUDED_URLS = "/health/,/metrics"


def current_trace_context() -> dict[str, str] | None:
    """The current span's W3C context (``{"traceparent": ...}``) to store with a
    job, or None when no span is current (always so with tracing off)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    JOB_PROPAGATOR.inject(carrier)
    return carrier


def job_parent(trace_context: Mapping[str, str] | None) -> Context:
    """The context an attempt's span starts under: the enqueueing span's when
    the job carries one, else an empty context (the attempt is a root)."""
    if not trace_context:
        return Context()
    return JOB_PROPAGATOR.extract(trace_context)


def trace_id_of(trace_context: Mapping[str, str] | None) -> str | None:
    """The 32-hex-digit trace id of a stored W3C context (None if none or invalid)."""
    if not trace_context:
        return None
    span = trace.get_current_span(JOB_PROPAGATOR.extract(trace_context)).get_span_context()
    return format(span.trace_id, "032x") if span.is_valid else None


@dataclass
class Tracing:
    """The tracer provider of a process with tracing on, and what it patched."""

    provider: TracerProvider
    _apps: list[FastAPI] = field(default_factory=list)

    def tracer(self, name: str) -> trace.Tracer:
        return self.provider.get_tracer(name)

    def instrument_app(self, app: FastAPI) -> None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            excluded_urls=EXCLUDED_URLS,
            # The ASGI send/receive events would be two spans per request
            # saying nothing the request span does not.
            exclude_spans=["receive", "send"],
        )
        self._apps.append(app)

    def shutdown(self) -> None:
        """Undo the instrumentation and flush what is left to export."""
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

        for app in self._apps:
            FastAPIInstrumentor.uninstrument_app(app)
        self._apps.clear()
        HTTPXClientInstrumentor().uninstrument()
        PsycopgInstrumentor().uninstrument()
        self.provider.shutdown()
        if _Active.tracing is self:
            _Active.tracing = None


class _Active:
    """The process's tracing (one tracer provider per process)."""

    tracing: Tracing | None = None


def active() -> Tracing | None:
    """The process's tracing, or None when it is off."""
    return _Active.tracing


def tracer(name: str) -> trace.Tracer:
    """A tracer for a manual span: the process's, or the API's no-op one."""
    tracing = _Active.tracing
    return tracing.tracer(name) if tracing is not None else trace.NoOpTracer()


def instrument_app(app: FastAPI) -> None:
    """A span per HTTP request, when tracing is on."""
    if _Active.tracing is not None:
        _Active.tracing.instrument_app(app)


def setup_tracing(
    config: TracingConfig,
    *,
    environment: str = "production",
    exporter: SpanExporter | None = None,
    install_global: bool = True,
) -> Tracing | None:
    """Turn tracing on as ``config`` says (None, and nothing imported or patched,
    when it is off). Call before the database pool opens: psycopg's
    instrumentation applies to connections made after it. ``exporter``
    replaces the configured ones, exporting each span as it ends (tests)."""
    if not config.enabled and exporter is None:
        return None
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource(
        {
            "service.version": _version(),
            "deployment.environment.name": environment,
            **config.resource,
            "service.name": config.service_name,
        }
    )
    provider = TracerProvider(resource=resource, sampler=build_sampler(config))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        for each in _exporters(config):
            # Spans leave on the processor's own thread, in batches: an
            # attempt never waits for the collector.
            provider.add_span_processor(BatchSpanProcessor(each))
        log.info(
            "tracing on",
            exporters=list(config.exporters),
            endpoint=config.otlp_endpoint if "otlp" in config.exporters else None,
            sampler=config.sampler,
            service_name=config.service_name,
        )
    tracing = Tracing(provider)
    HTTPXClientInstrumentor().instrument(
        tracer_provider=provider, async_request_hook=_drop_query, request_hook=_drop_query_sync
    )
    # Statements only (ours, named in store/sql), never their parameters.
    PsycopgInstrumentor().instrument(tracer_provider=provider, capture_parameters=False)
    if install_global:
        trace.set_tracer_provider(provider)
    _Active.tracing = tracing
    return tracing


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("queue-service")
    except PackageNotFoundError:
        return "unknown"


def build_sampler(config: TracingConfig) -> Sampler:
    from opentelemetry.sdk.trace import sampling

    from queue_service.observability.sampling import NoOrphanClients

    ratio = sampling.TraceIdRatioBased(config.sampler_arg)
    roots: dict[str, Sampler] = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": ratio,
    }
    name = config.sampler
    inner = (
        sampling.ParentBased(roots[name.removeprefix("parentbased_")])
        if name.startswith("parentbased_")
        else roots[name]
    )
    return NoOrphanClients(inner)


def _exporters(config: TracingConfig) -> list[SpanExporter]:
    found: list[SpanExporter] = []
    if "otlp" in config.exporters:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        found.append(
            OTLPSpanExporter(endpoint=config.otlp_endpoint, headers=config.otlp_headers or None)
        )
    if "console" in config.exporters:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        found.append(ConsoleSpanExporter())
    return found


def _scrubbed(url: str) -> str:
    # A webhook URL's query string may carry the receiver's token.
    return url.partition("?")[0]


def _drop_query_sync(span: trace.Span, request: Any) -> None:
    recorded = getattr(span, "attributes", None) or {}
    for key in ("url.full", "http.url"):  # the new and the old semantic conventions
        if key in recorded:
            span.set_attribute(key, _scrubbed(str(request.url)))


async def _drop_query(span: trace.Span, request: Any) -> None:
    _drop_query_sync(span, request)
