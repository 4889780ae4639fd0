"""Which OTEL_* variables switch tracing on, and the start-up errors for the
ones the installed SDK cannot honour."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from queue_service.settings import Settings


def tracing(**env: Any) -> Any:
    return Settings(**env).tracing


def test_tracing_is_off_when_no_otel_variable_is_set() -> None:
    assert tracing().enabled is False


@pytest.mark.parametrize(
    ("env", "endpoint"),
    [
        ({"otel_traces_exporter": "otlp"}, "http://localhost:4318/v1/traces"),
        ({"otel_exporter_otlp_endpoint": "http://c:4318/"}, "http://c:4318/v1/traces"),
        ({"otel_exporter_otlp_traces_endpoint": "https://c/x"}, "https://c/x"),
    ],
)
def test_an_otlp_exporter_or_endpoint_switches_tracing_on(
    env: dict[str, str], endpoint: str
) -> None:
    config = tracing(**env)
    assert (config.enabled, config.exporters, config.otlp_endpoint) == (True, ("otlp",), endpoint)


def test_exporter_none_or_sdk_disabled_keeps_tracing_off_even_with_an_endpoint() -> None:
    assert not tracing(otel_traces_exporter="none", otel_exporter_otlp_endpoint="http://c").enabled
    assert not tracing(otel_sdk_disabled=True, otel_traces_exporter="otlp").enabled


def test_headers_and_resource_attributes_are_parsed_url_decoded() -> None:
    config = tracing(
        otel_traces_exporter="otlp",
        otel_exporter_otlp_headers="api-key=s%3Dcret, x-team=ops",
        otel_resource_attributes="region=eu-west-1",
    )
    assert config.otlp_headers == {"api-key": "s=cret", "x-team": "ops"}
    assert config.resource == {"region": "eu-west-1"}


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"otel_traces_exporter": "zipkin"}, "OTEL_TRACES_EXPORTER 'zipkin' is not available"),
        ({"otel_exporter_otlp_protocol": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL 'grpc'"),
        ({"otel_traces_sampler": "sometimes"}, "OTEL_TRACES_SAMPLER must be one of"),
        ({"otel_traces_sampler_arg": 2}, "OTEL_TRACES_SAMPLER_ARG is a ratio"),
        ({"otel_exporter_otlp_endpoint": "collector:4318"}, "must be an http:// or https://"),
        ({"otel_exporter_otlp_headers": "secret-without-key"}, "OTEL_EXPORTER_OTLP_HEADERS"),
    ],
)
def test_unusable_otel_values_are_start_up_errors_naming_the_variable(
    env: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**env)
    message = caught.value.errors()[0]["msg"]
    assert says in message
    assert "secret-without-key" not in message
