"""Run the API inside the service's own event loop with uvicorn, stopping
when the service's stop event is set (the service owns the signals)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Generator

import structlog
import uvicorn
from fastapi import FastAPI

from queue_service.errors import StartupError

log = structlog.get_logger("queue_service.api")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The service installed its own SIGTERM/SIGINT handlers (drain the
        # workers too); uvicorn must not take them over.
        yield


def check_can_listen(host: str, port: int) -> None:
    """Bind and release ``host:port`` before anything else starts (workers
    would otherwise claim jobs, then drain them, before the API's bind
    fails); raise StartupError saying why it cannot be had."""
    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise StartupError(
            f"QUEUE_SERVICE_HOST={host} is not an address of this host: {exc.strerror}",
            "set QUEUE_SERVICE_HOST to an address of this host, e.g. 127.0.0.1 or 0.0.0.0",
        ) from None
    with socket.socket(family, kind, proto) as probe:
        # As uvicorn binds: a port in TIME_WAIT after a restart is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise _cannot_listen(host, port, exc.errno) from None


def _cannot_listen(host: str, port: int, errno_: int | None) -> StartupError:
    if errno_ == errno.EADDRINUSE:
        why, code = "the port is in use (another queue-service, or another program)", 1
    elif errno_ == errno.EADDRNOTAVAIL:
        why, code = "the address is not one of this host's", 2
    elif errno_ == errno.EACCES:
        why, code = "ports below 1024 need privileges", 2
    else:
        why, code = "the port is in use or the address is not this host's", 1
    return StartupError(
        f"the HTTP API cannot listen on {host}:{port} (QUEUE_SERVICE_HOST, QUEUE_SERVICE_PORT):"
        f" {why}",
        "stop the process that holds it, or set QUEUE_SERVICE_PORT to a free port",
        exit_code=code,
    )


async def serve_http(
    app: FastAPI,
    host: str,
    port: int,
    stop: asyncio.Event,
    keep_alive_seconds: int,
    started: asyncio.Event | None = None,
) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        # Nothing reads the client's address, so X-Forwarded-* rewriting
        # would cost every request for nothing.
        proxy_headers=False,
        # QUEUE_SERVICE_HTTP_KEEP_ALIVE_SECONDS: longer than the clients' own
        # idle timeouts, so the client, not the server, ends an idle connection.
        timeout_keep_alive=keep_alive_seconds,
        timeout_graceful_shutdown=10,
    )
    server = _Server(config)

    async def stop_when_told() -> None:
        await stop.wait()
        server.should_exit = True

    async def serve() -> None:
        try:
            await server.serve()
        except SystemExit:
            # uvicorn exits the process when it cannot bind (after logging the
            # OS's reason); say what to do instead.
            raise _cannot_listen(host, port, None) from None

    stopper = asyncio.create_task(stop_when_told())
    serving = asyncio.create_task(serve())
    try:
        # uvicorn offers no event for "listening"; its flag is polled briefly.
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if server.started:
            # Where to scrape: the operator's first question after "is it up".
            log.info(
                "HTTP API listening",
                host=host,
                port=port,
                metrics=f"http://{host}:{port}/metrics",
            )
            if started is not None:
                started.set()
        await serving
    finally:
        stopper.cancel()
        await asyncio.gather(stopper, return_exceptions=True)
