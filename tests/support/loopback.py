"""What every HTTP fake shares: a ThreadingHTTPServer on a loopback port the
OS picks, served from a daemon thread while the fake is in a ``with``."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


class QuietHandler(BaseHTTPRequestHandler):
    """A fake's request handler: no access log on stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def send_json(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Answer ``body`` (JSON unless ``headers`` say another content type)."""
        self.send_response(status)
        for name, value in {"content-type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


@contextlib.contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class LoopbackServer:
    """Base of a fake: ``handler`` answers each request; ``base_url`` is
    ``http://host:port`` (the port is bound at once, served inside ``with``)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1") -> None:
        self.server: ThreadingHTTPServer = _Server((host, 0), handler)
        self.host = host
        self.port: int = self.server.server_address[1]
        self._serving = contextlib.ExitStack()

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __enter__(self) -> Self:
        self._serving.enter_context(serving(self.server))
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._serving.close()
