"""The tracing configuration the standard OTEL_* variables describe, parsed and
checked (pure: settings.py hands the raw values in, observability/tracing.py
builds the SDK from the result)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

EXPORTERS = frozenset({"otlp", "console"})
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
OTLP_PROTOCOL = "http/protobuf"
DEFAULT_OTLP_TRACES_ENDPOINT = "http://localhost:4318/v1/traces"


@dataclass(frozen=True)
class TracingConfig:
    """Whether spans are made, where they go and which are kept."""

    enabled: bool = False
    exporters: tuple[str, ...] = ()
    otlp_endpoint: str = DEFAULT_OTLP_TRACES_ENDPOINT
    otlp_headers: dict[str, str] = field(default_factory=dict)
    service_name: str = "queue-service"
    resource: dict[str, str] = field(default_factory=dict)
    sampler: str = "parentbased_always_on"
    sampler_arg: float = 1.0


def parse_pairs(name: str, value: str) -> dict[str, str]:
    """``k1=v1,k2=v2`` (values URL-encoded), as OTEL_RESOURCE_ATTRIBUTES and
    OTEL_EXPORTER_OTLP_HEADERS are written; raises ValueError naming ``name``."""
    pairs: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in value.split(","))):
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            # The item itself is not echoed: a header value may be a secret.
            raise ValueError(
                f"{name} is a comma-separated list of key=value pairs"
                " (e.g. key1=value1,key2=value2); one entry has no key=value"
            )
        pairs[key.strip()] = unquote(raw.strip())
    return pairs


def _url(name: str, value: str | None) -> str | None:
    if value and not value.startswith(("http://", "https://")):
        raise ValueError(f"{name} must be an http:// or https:// URL (e.g. http://collector:4318)")
    return value or None


def tracing_config(
    *,
    sdk_disabled: bool,
    exporter: str | None,
    endpoint: str | None,
    traces_endpoint: str | None,
    protocol: str | None,
    headers: str,
    service_name: str,
    resource_attributes: str,
    sampler: str,
    sampler_arg: float | None,
) -> TracingConfig:
    """Tracing is on when OTEL_TRACES_EXPORTER names an exporter, or (unset)
    when an OTLP endpoint is given; OTEL_SDK_DISABLED=true turns it off whatever
    else is set. Raises ValueError saying which variable to fix and how."""
    names = tuple(e.strip().lower() for e in (exporter or "").split(",") if e.strip())
    unknown = [n for n in names if n not in EXPORTERS | {"none"}]
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER {unknown[0]!r} is not available: use otlp"
            " (OTLP over HTTP/protobuf), console (spans printed to stdout) or none"
        )
    if "none" in names and len(names) > 1:
        raise ValueError("OTEL_TRACES_EXPORTER=none cannot be combined with another exporter")
    if protocol and protocol != OTLP_PROTOCOL:
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not supported: the installed"
            f" exporter speaks {OTLP_PROTOCOL} (port 4318 on a collector); grpc is not installed"
        )
    if sampler not in SAMPLERS:
        raise ValueError(f"OTEL_TRACES_SAMPLER must be one of {', '.join(SAMPLERS)}")
    if sampler_arg is not None and not 0 <= sampler_arg <= 1:
        raise ValueError("OTEL_TRACES_SAMPLER_ARG is a ratio between 0 and 1 (e.g. 0.1)")
    base = _url("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    full = _url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces_endpoint)
    if not names and (base or full):
        names = ("otlp",)
    exporters = tuple(n for n in names if n != "none")
    return TracingConfig(
        enabled=bool(exporters) and not sdk_disabled,
        exporters=exporters,
        # The signal-specific URL is used as is; the base one gets /v1/traces
        # (the OTLP exporter specification's rule).
        otlp_endpoint=full
        or (f"{base.rstrip('/')}/v1/traces" if base else None)
        or DEFAULT_OTLP_TRACES_ENDPOINT,
        otlp_headers=parse_pairs("OTEL_EXPORTER_OTLP_HEADERS", headers),
        service_name=service_name,
        resource=parse_pairs("OTEL_RESOURCE_ATTRIBUTES", resource_attributes),
        sampler=sampler,
        sampler_arg=1.0 if sampler_arg is None else sampler_arg,
    )
