"""Run the API inside the service's own event loop with uvicorn, stopping
when the service's stop event is set (the service owns the signals)."""

from __future__ import annotations

import asyncio
import contextlib
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


async def serve_http(
    app: FastAPI, host: str, port: int, stop: asyncio.Event, started: asyncio.Event | None = None
) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
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
            raise StartupError(
                f"the HTTP API cannot listen on {host}:{port} (QUEUE_SERVICE_HOST,"
                " QUEUE_SERVICE_PORT): the port is in use or the address is not this host's",
                "stop the process that holds it, or set QUEUE_SERVICE_PORT to a free port",
                exit_code=1,
            ) from None

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
