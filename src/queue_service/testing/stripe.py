"""A Stripe-shaped HTTP server on loopback, for the tests and `bench --workload
payments`: the subset of the REST API our adapter calls (form-encoded, Bearer
sk_test_, Idempotency-Key with Stripe's replay / conflict / 24 h expiry),
recording every request, with faults to inject. A real socket, so worker
processes can use it too."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

DECLINED = {
    "pm_card_chargeDeclined": "generic_decline",
    "pm_card_visa_chargeDeclined": "generic_decline",
    "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
}
_SEARCH_TERM = re.compile(r"metadata\['((?:[^'\\]|\\.)*)'\]:'((?:[^'\\]|\\.)*)'")


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    at: float
    status: int = 0


@dataclass
class _Answer:
    params: list[tuple[str, str]]
    status: int
    body: dict[str, Any]
    at: float


@dataclass
class _Hook:
    matches: Callable[[Request], bool]
    callback: Callable[[Request], None]


Result = tuple[int, dict[str, Any], dict[str, str]]


@dataclass
class FakeStripe:
    """State and faults; ``start()`` serves it on 127.0.0.1 (any free port)."""

    forget_after_seconds: float = 24 * 3600.0
    requests: list[Request] = field(default_factory=list)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    _answers: dict[str, _Answer] = field(default_factory=dict)
    _faults: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    _faults_after_effect: int = 0
    # Widens the window in which two charges could overlap; counts them.
    create_delay_seconds: float = 0.0
    creates_in_flight: int = 0
    max_creates_in_flight: int = 0
    _hooks: list[_Hook] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: ThreadingHTTPServer | None = None

    # -- control -----------------------------------------------------------
    def start(self) -> FakeStripe:
        fake = self

        class Handler(_Handler):
            state = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail_next(self, n: int, status: int = 500, retry_after: float | None = None) -> None:
        """The next ``n`` requests get ``status`` (and Retry-After) before any effect."""
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        with self._lock:
            self._faults += [(status, headers)] * n

    def fail_after_effect_next(self, n: int) -> None:
        """The next ``n`` successful POSTs take effect, then answer 500; like
        Stripe, the 500 is what their idempotency key replays from then on."""
        with self._lock:
            self._faults_after_effect += n

    def paid_intent(self, amount: int, currency: str = "usd") -> str:
        """A succeeded PaymentIntent made directly (no request recorded)."""
        with self._lock:
            status, intent = self._create_intent(
                {"amount": str(amount), "currency": currency, "payment_method": "pm_card_visa"}
            )
        assert status == 200
        return str(intent["id"])

    def authorized_intent(self, amount: int, currency: str = "usd") -> str:
        """A PaymentIntent authorized for manual capture, made directly."""
        with self._lock:
            status, intent = self._create_intent(
                {
                    "amount": str(amount),
                    "currency": currency,
                    "payment_method": "pm_card_visa",
                    "capture_method": "manual",
                }
            )
        assert status == 200
        return str(intent["id"])

    def after_answer(
        self, matches: Callable[[Request], bool], callback: Callable[[Request], None]
    ) -> None:
        """Call ``callback`` once, right after answering the first matching request."""
        with self._lock:
            self._hooks.append(_Hook(matches, callback))

    def age_keys(self, seconds: float) -> None:
        """Move every stored idempotency key ``seconds`` into the past."""
        with self._lock:
            for answer in self._answers.values():
                answer.at -= seconds

    def enter_create(self) -> None:
        with self._lock:
            self.creates_in_flight += 1
            self.max_creates_in_flight = max(self.max_creates_in_flight, self.creates_in_flight)
        if self.create_delay_seconds:
            time.sleep(self.create_delay_seconds)

    def leave_create(self) -> None:
        with self._lock:
            self.creates_in_flight -= 1

    # -- what happened -----------------------------------------------------
    def posts(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == "POST" and r.path == path]

    @property
    def charge_count(self) -> int:
        """PaymentIntents that moved or hold money."""
        return sum(i["status"] in ("succeeded", "requires_capture") for i in self.intents.values())

    @property
    def refund_count(self) -> int:
        return len(self.refunds)

    # -- serving -------------------------------------------------------------
    def handle(
        self, method: str, target: str, headers: Any, body: str
    ) -> tuple[Request, Result, list[_Hook]]:
        split = urlsplit(target)
        pairs = parse_qsl(body if method == "POST" else split.query, keep_blank_values=True)
        request = Request(
            method, split.path, _nest(pairs), headers.get("Idempotency-Key"), time.time()
        )
        with self._lock:
            self.requests.append(request)
            result = self._answer(method, request, pairs, headers)
            request.status = result[0]
            hooks = [h for h in self._hooks if h.matches(request)]
            for hook in hooks:
                self._hooks.remove(hook)
        return request, result, hooks

    def _answer(self, method: str, request: Request, pairs: Any, headers: Any) -> Result:
        if not (headers.get("Authorization") or "").startswith("Bearer sk_test_"):
            return _error(401, "invalid_request_error", "api_key_invalid", "Invalid API Key")
        if self._faults:
            status, extra = self._faults.pop(0)
            return (status, {"error": {"type": "api_error", "message": "injected"}}, extra)
        key = request.idempotency_key
        if method == "POST" and key:
            now = time.time()
            stored = self._answers.get(key)
            if stored is not None and now - stored.at > self.forget_after_seconds:
                stored = None  # Stripe forgets keys after 24 h
            if stored is not None:
                if stored.params != sorted(pairs):
                    return _error(
                        400,
                        "idempotency_error",
                        None,
                        "Keys for idempotent requests can only be used with the same parameters",
                    )
                return (stored.status, stored.body, {"Idempotent-Replayed": "true"})
        status, body = self._route(method, request.path, request.params)
        if method == "POST" and status < 400 and self._faults_after_effect:
            self._faults_after_effect -= 1
            status, body = 500, {"error": {"type": "api_error", "message": "injected after effect"}}
        if method == "POST" and key:
            self._answers[key] = _Answer(sorted(pairs), status, body, time.time())
        return (status, body, {})

    def _route(self, method: str, path: str, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["v1", "payment_intents"]:
            return self._create_intent(p)
        if method == "GET" and parts == ["v1", "payment_intents", "search"]:
            return 200, self._search(p.get("query", ""))
        if method == "POST" and len(parts) == 4 and parts[3] == "capture":
            return self._capture(parts[2], p)
        if method == "GET" and len(parts) == 3 and parts[1] in ("payment_intents", "charges"):
            table = self.intents if parts[1] == "payment_intents" else self.charges
            if parts[2] not in table:
                return _missing(parts[2])
            return 200, table[parts[2]]
        if method == "POST" and parts == ["v1", "refunds"]:
            return self._create_refund(p)
        if method == "GET" and parts == ["v1", "refunds"]:
            return 200, self._list_refunds(p)
        return _error(404, "invalid_request_error", "resource_missing", f"no route {path}")[:2]

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):08d}"

    def _create_intent(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        amount = int(p["amount"])
        intent_id = self._new_id("pi")
        intent: dict[str, Any] = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": 0,
            "currency": p["currency"],
            "payment_method": p.get("payment_method"),
            "metadata": p.get("metadata", {}),
            "latest_charge": None,
            "status": "requires_payment_method",
            "created": int(time.time()),
        }
        self.intents[intent_id] = intent
        decline = DECLINED.get(p.get("payment_method", ""))
        if decline:
            error = _error(402, "card_error", "card_declined", "Your card was declined.")
            error[1]["error"].update(decline_code=decline, payment_intent=intent)
            return error[:2]
        charge_id = self._new_id("ch")
        manual = p.get("capture_method") == "manual"
        self.charges[charge_id] = {
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": 0 if manual else amount,
            "captured": not manual,
            "currency": p["currency"],
            "payment_intent": intent_id,
            "metadata": {},
            "status": "succeeded",
        }
        intent.update(
            status="requires_capture" if manual else "succeeded",
            amount_received=0 if manual else amount,
            latest_charge=charge_id,
        )
        return 200, intent

    def _capture(self, intent_id: str, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        intent = self.intents.get(intent_id)
        if intent is None:
            return _missing(intent_id)
        if intent["status"] != "requires_capture":
            return _error(
                400, "invalid_request_error", "payment_intent_unexpected_state", "not capturable"
            )[:2]
        captured = int(p.get("amount_to_capture", intent["amount"]))
        intent.update(status="succeeded", amount_received=captured)
        self.charges[intent["latest_charge"]].update(captured=True, amount_captured=captured)
        return 200, intent

    def _intent_of(self, p: dict[str, Any]) -> dict[str, Any] | None:
        if "payment_intent" in p:
            return self.intents.get(p["payment_intent"])
        charge = self.charges.get(p.get("charge", ""))
        return self.intents.get(charge["payment_intent"]) if charge else None

    def _create_refund(self, p: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        intent = self._intent_of(p)
        if intent is None:
            return _missing(p.get("payment_intent") or p.get("charge") or "?")
        taken = sum(
            r["amount"] for r in self.refunds.values() if r["payment_intent"] == intent["id"]
        )
        amount = int(p.get("amount", intent["amount_received"] - taken))
        if amount > intent["amount_received"] - taken:
            return _error(
                400, "invalid_request_error", "amount_too_large", "Refund amount is too large"
            )[:2]
        refund_id = self._new_id("re")
        self.refunds[refund_id] = {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "currency": intent["currency"],
            "charge": intent["latest_charge"],
            "payment_intent": intent["id"],
            "metadata": p.get("metadata", {}),
            "status": "succeeded",
            "created": int(time.time()),
        }
        return 200, self.refunds[refund_id]

    def _list_refunds(self, p: dict[str, Any]) -> dict[str, Any]:
        intent = self._intent_of(p)
        data = [r for r in self.refunds.values() if intent and r["payment_intent"] == intent["id"]]
        return {"object": "list", "url": "/v1/refunds", "has_more": False, "data": data}

    def _search(self, query: str) -> dict[str, Any]:
        terms = [(_unquote(k), _unquote(v)) for k, v in _SEARCH_TERM.findall(query)]
        data = [
            i for i in self.intents.values() if all(i["metadata"].get(k) == v for k, v in terms)
        ]
        return {
            "object": "search_result",
            "url": "/v1/payment_intents/search",
            "has_more": False,
            "next_page": None,
            "data": data,
        }


class _Handler(BaseHTTPRequestHandler):
    state: FakeStripe
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        creates = self.command == "POST" and self.path == "/v1/payment_intents"
        if creates:
            self.state.enter_create()
        try:
            request, (status, payload, extra), hooks = self.state.handle(
                self.command, self.path, self.headers, body
            )
        finally:
            if creates:
                self.state.leave_create()
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Request-Id", f"req_{len(self.state.requests)}")
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)
        self.wfile.flush()
        for hook in hooks:  # after the answer left: the caller has it (or is about to)
            hook.callback(request)

    do_GET = _serve
    do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the requests are recorded on the state."""


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``metadata[order_id]=o1`` -> ``{"metadata": {"order_id": "o1"}}`` (one level, as we use)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if "[" in key and key.endswith("]"):
            outer, inner = key[:-1].split("[", 1)
            out.setdefault(outer, {})[inner] = value
        else:
            out[key] = value
    return out


def _unquote(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def _error(status: int, kind: str, code: str | None, message: str) -> Result:
    error: dict[str, Any] = {"type": kind, "message": message}
    if code:
        error["code"] = code
    return (status, {"error": error}, {})


def _missing(object_id: str) -> tuple[int, dict[str, Any]]:
    return _error(404, "invalid_request_error", "resource_missing", f"No such object: {object_id}")[
        :2
    ]
