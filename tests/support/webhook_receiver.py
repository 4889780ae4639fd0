"""Local servers for the webhook tests: a receiver that verifies each delivery
with the standardwebhooks library and records it by webhook-id, scripted
answers (410, 429, 500, 302, a huge body), and loopback canaries that only
count the connections they accept."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.support.loopback import LoopbackServer, QuietHandler


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"ok": true}'
    # Stream this many bytes of filler instead of ``body`` (until the client hangs up).
    stream_bytes: int = 0
    # A slow receiver: wait this long before answering.
    delay_seconds: float = 0.0


@dataclass(frozen=True)
class Delivery:
    webhook_id: str
    timestamp: str
    signatures: list[str]
    body: bytes
    # Index of every secret (as given to the receiver) whose verify() passed.
    verified_by: list[int]
    answered: int


class Receiver(LoopbackServer):
    """A Standard Webhooks receiver on 127.0.0.1 (port 0)."""

    def __init__(self, secrets: list[str], host: str = "127.0.0.1") -> None:
        self.secrets = list(secrets)
        self.deliveries: list[Delivery] = []
        self.script: list[Answer] = []
        self.streamed: list[int] = []  # bytes written of each streamed answer
        self._lock = threading.Lock()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver._handle(self, body)

        super().__init__(Handler, host)

    @property
    def url(self) -> str:
        return f"{self.base_url}/hooks"

    def answer(self, *answers: Answer) -> None:
        """Give these answers to the next requests, in order; then 200."""
        with self._lock:
            self.script.extend(answers)

    def by_id(self) -> dict[str, list[Delivery]]:
        grouped: dict[str, list[Delivery]] = defaultdict(list)
        with self._lock:
            for d in self.deliveries:
                grouped[d.webhook_id].append(d)
        return dict(grouped)

    def _verify(self, body: bytes, headers: dict[str, str]) -> list[int]:
        passed = []
        for i, secret in enumerate(self.secrets):
            try:
                Webhook(secret).verify(body, headers)
            # standardwebhooks raises ValueError on some malformed headers.
            except (WebhookVerificationError, ValueError):
                continue
            passed.append(i)
        return passed

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        verified = self._verify(body, headers)
        with self._lock:
            answer = self.script.pop(0) if self.script else Answer()
            if not verified:
                answer = Answer(401, body=b'{"error": "bad signature"}')
            self.deliveries.append(
                Delivery(
                    headers.get("webhook-id", ""),
                    headers.get("webhook-timestamp", ""),
                    headers.get("webhook-signature", "").split(" "),
                    body,
                    verified,
                    answer.status,
                )
            )
        if answer.delay_seconds:
            time.sleep(answer.delay_seconds)
        handler.send_response(answer.status)
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        if answer.stream_bytes:
            handler.send_header("content-length", str(answer.stream_bytes))
            handler.end_headers()
            self.streamed.append(self._stream(handler, answer.stream_bytes))
            return
        handler.send_header("content-length", str(len(answer.body)))
        handler.end_headers()
        handler.wfile.write(answer.body)

    @staticmethod
    def _stream(handler: BaseHTTPRequestHandler, total: int) -> int:
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < total:
                handler.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the client hung up: what the cap is for
        handler.close_connection = True
        return sent


class Canary:
    """A TCP listener that counts accepted connections and closes each at once."""

    def __init__(self, host: str) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    @contextlib.contextmanager
    def running(self) -> Iterator[Canary]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(5)
            self.sock.close()


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True
