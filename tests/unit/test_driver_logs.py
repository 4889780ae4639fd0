"""Uvicorn's and the drivers' log records (psycopg, asyncpg, httpx, stripe,
aiosmtplib) leave through the service's JSON pipeline, redacted like ours:
message arguments, extra fields and tracebacks alike."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest
import structlog

from queue_service.observability.logging import configure_logging
from tests.support.sensitive import SAMPLES, sample_leaks, sample_text

DRIVER_LOGGERS = (
    "uvicorn.error",
    "uvicorn.access",
    "psycopg",
    "psycopg.pool",
    "asyncpg",
    "httpx",
    "httpcore.http11",
    "stripe",
    "aiosmtplib",
)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield io.StringIO()
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.mark.parametrize("name", DRIVER_LOGGERS)
def test_driver_records_are_json_lines_without_sensitive_values(
    stream: io.StringIO, name: str, request: pytest.FixtureRequest
) -> None:
    configure_logging("debug", stream=stream)
    logger = logging.getLogger(name)
    # psycopg holds its loggers at WARNING by default; what they emit is the point.
    saved = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    # serve_http turns uvicorn's access log off (access_log=False stops its
    # propagation) once any test has run a live server; what is checked here
    # is the pipeline a record goes through when a logger does emit.
    logger.propagate = True

    def restore() -> None:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]

    request.addfinalizer(restore)
    logger.debug("request %s", f"POST /v1/charges?email={SAMPLES['email']}")
    logger.info("answered: %s", sample_text(), extra={"body": dict(SAMPLES)})
    try:
        raise ValueError(f"could not parse {sample_text()}")
    except ValueError:
        logger.exception("failed for %s", SAMPLES["card"])
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["logger"] for line in lines] == [name] * 3
    assert [line["level"] for line in lines] == ["debug", "info", "error"]
    assert "ValueError" in lines[2]["exception"]
    assert sample_leaks(stream.getvalue()) == []


def test_percent_encoded_addresses_in_logged_urls_are_masked(stream: io.StringIO) -> None:
    configure_logging("debug", stream=stream)
    logging.getLogger("httpx").info(
        'HTTP Request: GET %s "HTTP/1.1 200 OK"',
        "http://svc/api?to=jane.doe%2Btickets%40example.com&x=1",
    )
    [line] = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert "to=j***%40example.com&x=1" in line["event"]
