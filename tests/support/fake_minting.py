"""The platform's minting service on loopback: verifies SPEC §6 HMAC
signatures (the API's own verifier), mints once per ticket, answers status,
and can fail, or run a callback once it has accepted a mint (crash tests)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

from queue_service.api.auth.principal import AuthError
from queue_service.api.auth.signing import ANY_SERVICE, HmacVerifier
from queue_service.core.base58 import b58encode
from tests.support.loopback import LoopbackServer, QuietHandler
from tests.support.nonces import MemoryNonceStore

MINT_PATH = "/api/v1/internal/mint"
_STATUS = re.compile(r"^/api/v1/internal/mint/([^/?]+)/status$")
CALLER = "queue-service"


@dataclass
class Mint:
    tenant_id: str
    ticket_id: str
    wallet_address: str
    idempotency_key: str
    mint_address: str
    signature: str

    def answer(self) -> dict[str, Any]:
        return {
            "ticket_id": self.ticket_id,
            "status": "minted",
            "mint_address": self.mint_address,
            "signature": self.signature,
        }


class FakeMinting(LoopbackServer):
    """``requests`` lists every authenticated call as (kind, ticket_id, key);
    ``refused`` counts signatures refused with 401. ``fail_mints`` answers
    the next N mint calls with 500 (nothing minted). ``after_accept`` runs
    once a mint is recorded, BEFORE its answer is written (a worker killed
    there never hears that the service accepted); ``answer_accepted=False``
    then closes the connection without answering."""

    def __init__(self, secret: str) -> None:
        self.mints: dict[tuple[str, str], Mint] = {}
        self.mint_count: dict[str, int] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.refused = 0
        self.fail_mints = 0
        self.after_accept: Callable[[], None] | None = None
        self.answer_accepted = True
        self.secret = secret
        self._lock = threading.Lock()
        super().__init__(_handler(self))

    @property
    def secret(self) -> str:
        return self._secret

    @secret.setter
    def secret(self, value: str) -> None:
        self._secret = value
        self.verifier = HmacVerifier({ANY_SERVICE: value}, frozenset({CALLER}), MemoryNonceStore())

    @property
    def url(self) -> str:
        return self.base_url

    def kinds(self, ticket_id: str) -> list[str]:
        """The calls made for one ticket, in order: "mint" / "status"."""
        return [kind for kind, ticket, _ in self.requests if ticket == ticket_id]

    def mint(self, tenant: str, body: dict[str, Any], key: str) -> tuple[int, dict[str, Any]]:
        if self.fail_mints > 0:
            self.fail_mints -= 1
            return 500, {"title": "minting backend unavailable"}
        ticket = str(body["ticket_id"])
        existing = self.mints.get((tenant, ticket))
        if existing is not None:
            if existing.wallet_address != body["wallet_address"]:
                return 409, {"title": "ticket already minted to another wallet"}
            return 200, existing.answer()  # the idempotent replay: no second mint
        seed = f"{tenant}\n{ticket}".encode()
        minted = Mint(
            tenant,
            ticket,
            str(body["wallet_address"]),
            key,
            b58encode(hashlib.sha256(seed).digest()),
            b58encode(hashlib.sha512(seed).digest()),
        )
        self.mints[(tenant, ticket)] = minted
        self.mint_count[ticket] = self.mint_count.get(ticket, 0) + 1
        return 200, minted.answer()


def _handler(fake: FakeMinting) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            self._serve(b"")

        def do_POST(self) -> None:
            self._serve(self.rfile.read(int(self.headers.get("content-length") or 0)))

        def _serve(self, raw: bytes) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                asyncio.run(fake.verifier.verify(headers, self.command, self.path, raw))
            except AuthError as exc:
                with fake._lock:
                    fake.refused += 1
                self._reply(401, {"title": "unauthorized", "detail": str(exc)})
                return
            tenant = headers.get("x-tenant-id", "")
            if self.command == "POST" and self.path == MINT_PATH:
                body = json.loads(raw)
                key = headers.get("idempotency-key")
                if not key or key != body.get("idempotency_key"):
                    self._reply(400, {"title": "Idempotency-Key header and body disagree"})
                    return
                with fake._lock:
                    fake.requests.append(("mint", str(body["ticket_id"]), key))
                    status, answer = fake.mint(tenant, body, key)
                    callback = fake.after_accept if status == 200 else None
                if callback is not None:
                    callback()
                    if not fake.answer_accepted:
                        self.close_connection = True
                        return
                self._reply(status, answer)
                return
            match = _STATUS.match(self.path)
            if self.command == "GET" and match:
                ticket = unquote(match[1])
                with fake._lock:
                    fake.requests.append(("status", ticket, None))
                    existing = fake.mints.get((tenant, ticket))
                if existing is None:
                    self._reply(404, {"title": "no mint for this ticket"})
                else:
                    self._reply(200, existing.answer())
                return
            self._reply(404, {"title": "not found"})

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            self.send_json(status, json.dumps(body).encode())

    return Handler
