"""A Solana JSON-RPC 2.0 server on loopback (getBalance, getSignatureStatuses)
with a settable balance, reachable from worker processes too."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from queue_service.core.base58 import is_solana_address
from tests.support.loopback import LoopbackServer, QuietHandler

LAMPORTS_PER_SOL = 1_000_000_000


class FakeSolana(LoopbackServer):
    """``balance_sol`` is what getBalance reports for any valid address;
    ``signature_states`` overrides a signature's status (default: finalized);
    ``scripted`` answers the next requests with (status, headers, body)."""

    def __init__(self, balance_sol: float = 2.0) -> None:
        self.balance_sol = balance_sol
        self.signature_states: dict[str, dict[str, Any] | None] = {}
        self.scripted: list[tuple[int, dict[str, str], bytes]] = []
        self.calls: list[str] = []
        self.slot = 1000
        self.healthy = True  # what getHealth says
        self._lock = threading.Lock()
        super().__init__(_handler(self))

    @property
    def url(self) -> str:
        return f"{self.base_url}/"

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """The JSON-RPC answer to one request (called under the lock)."""
        method, params, rid = body.get("method"), body.get("params") or [], body.get("id")
        self.calls.append(str(method))
        self.slot += 1
        context = {"slot": self.slot}
        if method == "getBalance":
            if not params or not isinstance(params[0], str) or not is_solana_address(params[0]):
                return _error(rid, -32602, "Invalid param: WrongSize")
            lamports = round(self.balance_sol * LAMPORTS_PER_SOL)
            return _result(rid, {"context": context, "value": lamports})
        if method == "getSignatureStatuses":
            if not params or not isinstance(params[0], list):
                return _error(rid, -32602, "Invalid params: expected a list of signatures")
            default = {"slot": self.slot, "confirmations": None, "err": None}
            values = [
                self.signature_states.get(s, {**default, "confirmationStatus": "finalized"})
                for s in params[0]
            ]
            return _result(rid, {"context": context, "value": values})
        if method == "getHealth":
            if self.healthy:
                return _result(rid, "ok")
            return _error(rid, -32005, "Node is behind by 42 slots")
        return _error(rid, -32601, "Method not found")


def _result(rid: Any, result: Any) -> tuple[int, dict[str, str], bytes]:
    return 200, {}, json.dumps({"jsonrpc": "2.0", "result": result, "id": rid}).encode()


def _error(rid: Any, code: int, message: str) -> tuple[int, dict[str, str], bytes]:
    body = {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": rid}
    return 200, {}, json.dumps(body).encode()


def _handler(fake: FakeSolana) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            with fake._lock:
                if fake.scripted:
                    status, headers, out = fake.scripted.pop(0)
                else:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = None
                    if not isinstance(body, dict) or body.get("jsonrpc") != "2.0":
                        status, headers, out = _error(None, -32700, "Parse error")
                    else:
                        status, headers, out = fake.answer(body)
            self.send_json(status, out, headers)

    return Handler
