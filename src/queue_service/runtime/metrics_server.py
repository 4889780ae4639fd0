"""GET /metrics for processes without the HTTP API (`queue-service worker`):
a minimal HTTP/1.1 server on asyncio streams, one request per connection."""

from __future__ import annotations

import asyncio
import contextlib
import hmac

import orjson
import structlog

from queue_service.runtime.gauges import CONTENT_TYPE, DatabaseGauges, render

log = structlog.get_logger("queue_service.metrics")

READ_TIMEOUT_SECONDS = 5.0
MAX_HEADER_LINES = 100


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether ``Authorization: Bearer <token>`` carries the token (constant time)."""
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


class MetricsServer:
    """Serves the same /metrics text as the API's, on its own port."""

    def __init__(self, gauges: DatabaseGauges, host: str, port: int, token: str | None) -> None:
        self.gauges = gauges
        self.host = host
        self.port = port
        self.token = token

    async def run(self, stop: asyncio.Event) -> None:
        try:
            server = await asyncio.start_server(self._handle, self.host, self.port)
        except OSError as exc:
            raise RuntimeError(
                f"/metrics could not listen on {self.host}:{self.port} ({exc.strerror});"
                " change QUEUE_SERVICE_METRICS_PORT"
            ) from None
        port = server.sockets[0].getsockname()[1]
        log.info("metrics listening", host=self.host, port=port, path="/metrics")
        async with server:
            await stop.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                request = (await reader.readline()).decode("latin-1").split()
                headers = await _headers(reader)
            status, content_type, body = await self._answer(request, headers)
            head = (
                f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n"
            )
            if status.startswith("401"):
                head += "www-authenticate: Bearer\r\n"
            writer.write(head.encode() + b"\r\n" + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError):
            pass  # a slow or broken scraper: drop it
        except Exception:
            log.exception("metrics request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, request: list[str], headers: dict[str, str]) -> tuple[str, str, bytes]:
        if len(request) != 3:
            return _problem(400, "Bad Request", "malformed request line")
        method, target, _ = request
        if target.partition("?")[0] != "/metrics":
            return _problem(404, "Not Found", "only /metrics is served here")
        if method != "GET":
            return _problem(405, "Method Not Allowed", "use GET")
        if self.token is not None and not bearer_matches(headers.get("authorization"), self.token):
            return _problem(401, "Unauthorized", "send Authorization: Bearer <METRICS_TOKEN>")
        try:
            reading = await self.gauges.read()
        except Exception as exc:
            log.warning("metrics: the database did not answer", error=type(exc).__name__)
            return _problem(503, "Service Unavailable", "the database did not answer")
        return "200 OK", CONTENT_TYPE, await asyncio.to_thread(render, reading)


async def _headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        line = (await reader.readline()).decode("latin-1").strip()
        if not line:
            return headers
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    raise ValueError("too many header lines")


def _problem(status: int, title: str, detail: str) -> tuple[str, str, bytes]:
    body = orjson.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    return f"{status} {title}", "application/problem+json", body
