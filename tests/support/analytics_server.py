"""A fake analytics service: verifies the SPEC §6 HMAC signature of every
request with the API's own HmacVerifier and records the events it accepts."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from queue_service.api.auth.principal import AuthError
from queue_service.api.auth.signing import HmacVerifier
from queue_service.core.signing import signed_path
from tests.support.loopback import LoopbackServer, QuietHandler
from tests.support.nonces import MemoryNonceStore


@dataclass(frozen=True)
class Received:
    path: str
    service: str
    tenant_id: str | None
    idempotency_key: str | None
    body: Any


class FakeAnalytics(LoopbackServer):
    def __init__(self, service: str, secret: str) -> None:
        self.verifier = HmacVerifier({service: secret}, frozenset({service}), MemoryNonceStore())
        self.received: list[Received] = []
        self.refused: list[str] = []
        self.script: list[int] = []  # status codes to answer next, then 202
        self._lock = threading.Lock()
        fake = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status = fake._handle(self, body)
                self.send_response(status)
                self.send_header("content-length", "0")
                if status == 429:
                    self.send_header("retry-after", "120")
                self.end_headers()

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return self.base_url

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> int:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        raw_path, _, query = handler.path.partition("?")
        try:
            service = asyncio.run(
                self.verifier.verify(headers, handler.command, signed_path(raw_path, query), body)
            )
        except AuthError as exc:
            with self._lock:
                self.refused.append(str(exc))
            return 401
        with self._lock:
            if self.script:
                return self.script.pop(0)
            self.received.append(
                Received(
                    raw_path,
                    service,
                    headers.get("x-tenant-id"),
                    headers.get("idempotency-key"),
                    json.loads(body),
                )
            )
        return 202
