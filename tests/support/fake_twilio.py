"""A Twilio-shaped HTTP server for tests: Messages.json and Calls.json on
127.0.0.1, basic auth checked, every request recorded, error answers
(400/429/500, with Retry-After) on demand."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

from tests.support.loopback import LoopbackServer, QuietHandler

ACCOUNT_SID = "AC00000000000000000000000000000001"
AUTH_TOKEN = "test-twilio-token-0123456789"
FROM_NUMBER = "+15005550006"


@dataclass(frozen=True, slots=True)
class Recorded:
    resource: str  # "Messages" or "Calls"
    form: dict[str, str]
    authorization: str | None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, object]
    retry_after: str | None = None
    resource: str | None = None  # only a request to this resource (None: any)


class FakeTwilio(LoopbackServer):
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.refused: list[int] = []
        self._answers: list[Answer] = []
        self._lock = threading.Lock()
        super().__init__(self._handler_class())

    def answer_next(
        self,
        status: int,
        *,
        code: int = 0,
        retry_after: str | None = None,
        resource: str | None = None,
    ) -> None:
        """Answer the next request (to ``resource``, "Messages" or "Calls", when
        given: SMS and calls may be sent at once) with an error ``status``
        (Twilio's JSON error body)."""
        body: dict[str, object] = {"status": status, "message": f"error {status} for +14155550100"}
        if code:
            body["code"] = code
        with self._lock:
            self._answers.append(Answer(status, body, retry_after, resource))

    def of(self, resource: str) -> list[Recorded]:
        """The requests that created a message or call (not the refused ones)."""
        with self._lock:
            return [r for r in self.requests if r.resource == resource]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                prefix = f"/2010-04-01/Accounts/{ACCOUNT_SID}/"
                resource = self.path.removeprefix(prefix).removesuffix(".json")
                if not self.path.startswith(prefix) or resource not in ("Messages", "Calls"):
                    self._send(404, {"code": 20404, "message": "not found", "status": 404})
                    return
                expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
                auth = self.headers.get("Authorization")
                if auth != f"Basic {expected}":
                    self._send(401, {"code": 20003, "message": "Authenticate", "status": 401})
                    return
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                with fake._lock:
                    answer = next(
                        (a for a in fake._answers if a.resource in (None, resource)), None
                    )
                    if answer is not None:
                        fake._answers.remove(answer)
                    if answer is not None:
                        fake.refused.append(answer.status)
                    else:
                        fake.requests.append(Recorded(resource, form, auth))
                        count = len(fake.requests)
                if answer is not None:
                    self._send(answer.status, answer.body, answer.retry_after)
                    return
                kind = "SM" if resource == "Messages" else "CA"
                sid = f"{kind}{count:032x}"
                self._send(201, {"sid": sid, "status": "queued", "to": form.get("To")})

            def _send(
                self, status: int, body: dict[str, object], retry_after: str | None = None
            ) -> None:
                headers = {} if retry_after is None else {"Retry-After": retry_after}
                self.send_json(status, json.dumps(body).encode(), headers)

        return Handler
