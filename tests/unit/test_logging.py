"""Log output: one redacted JSON object per line from structlog and stdlib alike."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from queue_service.observability.logging import configure_logging

SECRET = "sk_live_51H8abcDEFghiJKL"
EMAIL = "john.doe@example.com"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A capture stream; logging and structlog are restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield io.StringIO()
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = stream.getvalue().splitlines()
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(entry, dict) for entry in parsed)
    return parsed


def _log_payment_from_both_apis() -> None:
    structlog.get_logger("queue_service.jobs").info(
        "payment captured", email=EMAIL, api_key=SECRET, amount=1500, job_id="j-1"
    )
    logging.getLogger("psycopg").warning(
        "retrying for %s with %s", EMAIL, SECRET, extra={"refund_amount": 700}
    )


def test_structlog_and_stdlib_records_are_redacted_json_lines(stream: io.StringIO) -> None:
    configure_logging("info", stream=stream)
    _log_payment_from_both_apis()
    ours, library = _lines(stream)
    assert ours["event"] == "payment captured"
    assert ours["email"] == "j***@example.com"
    assert ours["api_key"] == "[redacted]"
    assert ours["job_id"] == "j-1"
    assert library["event"] == "retrying for j***@example.com with sk_live_[redacted]"
    assert (ours["logger"], library["logger"]) == ("queue_service.jobs", "psycopg")
    assert (ours["level"], library["level"]) == ("info", "warning")
    assert EMAIL not in stream.getvalue()
    assert SECRET not in stream.getvalue()


def test_amounts_are_absent_at_info(stream: io.StringIO) -> None:
    configure_logging("info", stream=stream)
    _log_payment_from_both_apis()
    ours, library = _lines(stream)
    assert "amount" not in ours
    assert "refund_amount" not in library


def test_amounts_are_present_at_debug_and_still_redacted(stream: io.StringIO) -> None:
    configure_logging("debug", stream=stream)
    _log_payment_from_both_apis()
    ours, library = _lines(stream)
    assert ours["amount"] == 1500
    assert library["refund_amount"] == 700
    assert ours["email"] == "j***@example.com"
    assert SECRET not in stream.getvalue()


def test_every_line_has_iso_utc_timestamp_and_leading_keys(stream: io.StringIO) -> None:
    configure_logging("info", stream=stream)
    _log_payment_from_both_apis()
    for entry in _lines(stream):
        assert list(entry)[:4] == ["timestamp", "level", "logger", "event"]
        stamp = dt.datetime.fromisoformat(entry["timestamp"])
        assert stamp.utcoffset() == dt.timedelta(0)


def test_bound_context_is_merged_into_both_apis(stream: io.StringIO) -> None:
    configure_logging("info", stream=stream)
    structlog.contextvars.bind_contextvars(job_id="j-9", request_id="r-1", tenant_id="t-3")
    structlog.get_logger().info("claimed")
    logging.getLogger("asyncio").error("loop stalled")
    for entry in _lines(stream):
        assert (entry["job_id"], entry["request_id"], entry["tenant_id"]) == ("j-9", "r-1", "t-3")


def test_levels_below_the_configured_one_are_dropped(stream: io.StringIO) -> None:
    configure_logging("warning", stream=stream)
    structlog.get_logger().info("quiet")
    logging.getLogger("x").info("quiet too")
    structlog.get_logger().warning("loud")
    assert [entry["event"] for entry in _lines(stream)] == ["loud"]


def test_exception_tracebacks_are_formatted_and_redacted(stream: io.StringIO) -> None:
    configure_logging("info", stream=stream)
    try:
        raise ConnectionError(f"postgresql://queue:hunter2@db/app refused {EMAIL}")
    except ConnectionError:
        structlog.get_logger().exception("connect failed")
        logging.getLogger("psycopg").exception("connect failed")
    for entry in _lines(stream):
        assert entry["level"] == "error"
        assert "Traceback (most recent call last)" in entry["exception"]
        assert "postgresql://queue:***@db/app refused j***@example.com" in entry["exception"]
    assert "hunter2" not in stream.getvalue()


def test_configuring_twice_replaces_the_handler(stream: io.StringIO) -> None:
    configure_logging("info", stream=stream)
    configure_logging("info", stream=stream)
    structlog.get_logger().info("once")
    logging.getLogger("lib").info("once too")
    assert [entry["event"] for entry in _lines(stream)] == ["once", "once too"]


def test_logger_created_before_configuration_uses_it(stream: io.StringIO) -> None:
    early = structlog.get_logger("early")
    configure_logging("info", stream=stream)
    early.info("hello", to=EMAIL)
    assert _lines(stream)[0]["to"] == "j***@example.com"


def test_values_orjson_rejects_still_produce_a_json_line(stream: io.StringIO) -> None:
    configure_logging("info", stream=stream)
    structlog.get_logger().info("odd \ud800 text", big=2**70)
    (entry,) = _lines(stream)
    assert entry["big"] == 2**70
    assert entry["event"] == "odd \ud800 text"


def test_console_renderer_is_readable_and_still_redacted(stream: io.StringIO) -> None:
    configure_logging("info", json=False, stream=stream)
    _log_payment_from_both_apis()
    output = stream.getvalue()
    assert "payment captured" in output
    assert "j***@example.com" in output
    assert EMAIL not in output
    assert SECRET not in output
    assert "1500" not in output
    with pytest.raises(json.JSONDecodeError):
        json.loads(output.splitlines()[0])


def test_unknown_level_is_rejected_with_the_choices() -> None:
    with pytest.raises(ValueError, match="expected one of: debug, info, warning"):
        configure_logging("verbose")
