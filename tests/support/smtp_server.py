"""A real SMTP server for tests (aiosmtpd on 127.0.0.1, a free port picked
first): records what it accepts, answers 4xx/5xx when told to, and calls a
hook after it stored a message and before it says 250."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    # aiosmtpd's Controller(port=0) cannot report the port it got.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RecordingHandler:
    """aiosmtpd handler: RCPT answers from a script, DATA recorded."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refused: list[str] = []  # every scripted refusal sent
        self._replies: list[str] = []
        self._always: str | None = None
        self._lock = threading.Lock()
        # Runs on the server's thread after a message is stored, before the
        # 250; it may block (the client then waits for its reply).
        self.after_accept: Callable[[EmailMessage], None] | None = None

    def refuse_next(self, reply: str, times: int = 1) -> None:
        """Answer the next ``times`` RCPT commands with ``reply`` (e.g. "451 4.3.0 busy")."""
        with self._lock:
            self._replies += [reply] * times

    def refuse_always(self, reply: str) -> None:
        """Answer every RCPT with ``reply`` (e.g. "550 5.1.1 mailbox unavailable")."""
        self._always = reply

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self._lock:
            reply = self._replies.pop(0) if self._replies else self._always
        if reply is not None:
            self.refused.append(reply)
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        if self.after_accept is not None:
            self.after_accept(message)
        return "250 2.0.0 Message accepted for delivery"


class SmtpServer:
    def __init__(self, controller: Controller, handler: RecordingHandler, port: int) -> None:
        self.controller = controller
        self.handler = handler
        self.host = "127.0.0.1"
        self.port = port

    @property
    def messages(self) -> list[EmailMessage]:
        return list(self.handler.messages)

    def env(self) -> dict[str, str]:
        """SMTP_* for a worker process sending here."""
        return {"SMTP_HOST": self.host, "SMTP_PORT": str(self.port), "SMTP_TLS": "none"}


def _authenticator(username: str, password: str) -> Callable[..., AuthResult]:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            username.encode(),
            password.encode(),
        )
        return AuthResult(success=ok, handled=False)

    return check


@contextmanager
def smtp_server(auth: tuple[str, str] | None = None) -> Iterator[SmtpServer]:
    """A server on a free port; with ``auth`` (user, password) it requires
    AUTH (over plain text: loopback only) and answers 535 to a wrong password."""
    handler = RecordingHandler()
    port = free_port()
    options: dict[str, Any] = {}
    if auth is not None:
        options = {
            "authenticator": _authenticator(*auth),
            "auth_required": True,
            "auth_require_tls": False,
        }
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield SmtpServer(controller, handler, port)
    finally:
        controller.stop()
