"""Logging set-up: structlog over stdlib, one redacted JSON object per line.

Both ``structlog.get_logger()`` and ``logging.getLogger(...)`` records pass
through the same formatter on the root logger's handler, so library logs
(psycopg, asyncio, ...) get the same timestamp, level, logger, bound context
and redaction as ours.
"""

from __future__ import annotations

import json as stdlib_json
import logging
import sys
from typing import IO, Any, Final

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from queue_service.observability.redaction import UNLOGGABLE, redact_mapping

__all__ = ["RedactionProcessor", "configure_logging"]

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# Our handler is found by name so that a second call replaces it instead of
# adding another one (duplicate lines) or removing handlers we do not own.
_HANDLER_NAME: Final = "queue_service.observability"
_LEADING_KEYS: Final = ("timestamp", "level", "logger", "event")
# Attributes every LogRecord has, plus ones other formatters add to it in place;
# anything else on a record came from ``extra=`` and belongs in the event.
_RECORD_ATTRIBUTES: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class RedactionProcessor:
    """structlog processor applying the redaction rules to a whole event dict."""

    def __init__(self, *, keep_amounts: bool) -> None:
        self._keep_amounts = keep_amounts

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return redact_mapping(event_dict, keep_amounts=self._keep_amounts)


def _add_record_extras(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord):
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                event_dict.setdefault(key, value)
    return event_dict


def _leading_keys_first(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    # Readers scan the first columns of a line; keep them the same on every line.
    ordered = {key: event_dict[key] for key in _LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _json_default(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return UNLOGGABLE


def _serialize(event: Any, **_: Any) -> str:
    """orjson, falling back to the stdlib for what orjson refuses, so no line is lost."""
    try:
        return orjson.dumps(event, default=_json_default).decode("utf-8")
    except TypeError:
        pass  # lone surrogates and integers wider than 64 bits; the stdlib copes with both
    try:
        return stdlib_json.dumps(event, default=_json_default, allow_nan=False)
    except (TypeError, ValueError):
        detail = {"event": "log event could not be serialized", "detail": ascii(event)}
        return orjson.dumps(detail).decode("utf-8")


def _parse_level(level: str) -> int:
    try:
        return _LEVELS[level.strip().lower()]
    except (KeyError, AttributeError):
        expected = ", ".join(_LEVELS)
        msg = f"unknown log level {level!r}; expected one of: {expected}"
        raise ValueError(msg) from None


def _drop_color_message(_: object, __: str, event: EventDict) -> EventDict:
    """uvicorn adds an ANSI-coloured copy of each message: noise in JSON."""
    event.pop("color_message", None)
    return event


def _shared_processors() -> list[Processor]:
    """Processors that run for structlog and stdlib records alike."""
    return [
        _drop_color_message,
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _build_formatter(
    *, json: bool, keep_amounts: bool, colors: bool
) -> structlog.stdlib.ProcessorFormatter:
    renderer: Processor = (
        structlog.processors.JSONRenderer(serializer=_serialize)
        if json
        else structlog.dev.ConsoleRenderer(colors=colors)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[_add_record_extras, *_shared_processors()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become text before redaction: exception messages and
            # repr()s in them are a common way for a DSN or token to leak. The
            # console renderer prints this text too, instead of rich locals.
            structlog.processors.format_exc_info,
            RedactionProcessor(keep_amounts=keep_amounts),
            _leading_keys_first,
            renderer,
        ],
    )


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def configure_logging(
    level: str = "info", *, json: bool = True, stream: IO[str] | None = None
) -> None:
    """Route structlog and stdlib logging through one redacting renderer.

    ``level`` is debug, info, warning, error or critical; amounts are logged
    only at debug. ``json=False`` renders readable (still redacted) lines for
    a terminal. Logs go to ``stream``, standard error by default. Calling it
    again replaces the previous configuration.
    """
    numeric_level = _parse_level(level)
    target = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(target)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        _build_formatter(
            json=json, keep_amounts=numeric_level <= logging.DEBUG, colors=_is_tty(target)
        )
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        context_class=dict,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: loggers created at import time, before this runs, must
        # still pick up the configuration.
        cache_logger_on_first_use=False,
    )
