"""Service authentication: HMAC-SHA256 request signatures (SPEC §6), both sides.

The signed text is ``"{service}\\n{timestamp}\\n{nonce}\\n{METHOD}\\n{path}\\n{body_hash}"``
where ``path`` is the request target as sent: the raw, still percent-encoded path
and, when there is one, ``?`` and the raw query string. The query is signed on
purpose: left out, anyone on the way could change ``?status=`` or ``?limit=`` of a
signed request. So both sides take it from the raw request, never from a decoded
or normalised URL: the client from ``httpx.Request.url.raw_path``, the server
from ``signed_path(scope["raw_path"], scope["query_string"])``. A proxy that
rewrites the path in between breaks every signature.

Every failure is a 401, a service not on the allow-list too: the caller has not
authenticated, so 403 ("known, but not permitted") does not apply, and the
allow-list is in the SPEC, so naming the failure gives nothing away. Checks run
stateless and cheap first; the nonce is spent only after the signature is
proven, so a forger cannot burn a real caller's nonces. ``x-tenant-id`` is not in
the signed text (SPEC): a captured request cannot be replayed, but only TLS keeps
its tenant header from being changed in flight.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from queue_service.api.auth.principal import AuthError
from queue_service.core.signing import (
    HEADER_BODY_HASH,
    HEADER_NONCE,
    HEADER_SERVICE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    SIGNATURE_HEADERS,
    body_hash,
    canonical_string,
    signature,
)

ANY_SERVICE: Final = "*"
MIN_SECRET_BYTES: Final = 32

_KEY_HINT = "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
_SERVICE = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NONCE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_METHOD = re.compile(r"[A-Za-z]{1,20}")
# Visible ASCII only: what a conforming HTTP/1.1 request target may contain.
_PATH = re.compile(r"/[\x21-\x7e]{0,8191}")


class NonceStore(Protocol):
    """Remembers nonces per service; must be atomic across processes."""

    async def remember(self, service: str, nonce: str) -> bool:
        """True the first time (service, nonce) is seen, False ever after."""
        ...


def hmac_key(secret: str, name: str) -> bytes:
    """``secret`` as an HMAC key, refused (naming setting ``name``) if under 32 bytes."""
    key = secret.encode()
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"{name} must be at least {MIN_SECRET_BYTES} bytes; {_KEY_HINT}")
    return key


def _check_secrets(secrets: Mapping[str, str], allowed: frozenset[str]) -> dict[str, bytes]:
    keys = {
        name: hmac_key(
            secret,
            "INTERNAL_HMAC_SECRET" if name == ANY_SERVICE else f"the HMAC secret of {name!r}",
        )
        for name, secret in secrets.items()
    }
    bad = sorted(s for s in allowed if not _SERVICE.fullmatch(s))
    if bad:
        raise ValueError(
            f"INTERNAL_ALLOWED_SERVICES: {bad} are not service names "
            "(1 to 100 of letters, digits, '.', '_', '-')"
        )
    missing = sorted(s for s in allowed if s not in keys and ANY_SERVICE not in keys)
    if missing:
        raise ValueError(
            f"services {missing} are allowed but have no HMAC secret: "
            "set INTERNAL_HMAC_SECRET (shared by all services) or a secret per service"
        )
    return {s: keys[s] if s in keys else keys[ANY_SERVICE] for s in allowed}


class HmacVerifier:
    """Verifies signed service requests; construction validates the
    configuration and raises ValueError saying how to fix it."""

    def __init__(
        self,
        secrets: Mapping[str, str],
        allowed_services: frozenset[str],
        nonce_store: NonceStore,
        clock: Callable[[], float] = time.time,
        window_seconds: int = 60,
    ) -> None:
        if window_seconds <= 0:
            raise ValueError("the HMAC timestamp window must be a positive number of seconds")
        self._keys = _check_secrets(secrets, allowed_services)
        self._nonces = nonce_store
        self._clock = clock
        self.window_seconds = window_seconds

    @property
    def nonce_retention_seconds(self) -> int:
        """How long a nonce must be kept: a request is good from window seconds
        before its timestamp to window seconds after, plus a minute of margin
        for skew between this clock and the database's (which stamps seen_at)."""
        return 2 * self.window_seconds + 60

    async def verify(self, headers: Mapping[str, str], method: str, path: str, body: bytes) -> str:
        """The calling service's name; AuthError(401) for any failure.

        ``headers`` are looked up by lower-case name; ``path`` is
        :func:`signed_path` of the raw request; ``body`` is the raw body.
        """
        values = _required_headers(headers)
        service = values[HEADER_SERVICE]
        key = self._keys.get(service)
        if key is None:
            raise AuthError("unknown service")
        timestamp = values[HEADER_TIMESTAMP]
        if not _TIMESTAMP.fullmatch(timestamp):
            raise AuthError(f"invalid header {HEADER_TIMESTAMP}")
        if abs(self._clock() - int(timestamp)) > self.window_seconds:
            raise AuthError("timestamp outside the allowed window")
        nonce = values[HEADER_NONCE]
        if not _NONCE.fullmatch(nonce):
            raise AuthError(f"invalid header {HEADER_NONCE}")
        sent_hash = values[HEADER_BODY_HASH]
        if not _HEX_SHA256.fullmatch(sent_hash):
            raise AuthError(f"invalid header {HEADER_BODY_HASH}")
        if not hmac.compare_digest(sent_hash.lower(), body_hash(body)):
            raise AuthError("body hash does not match the body")
        canonical = _canonical_request(service, timestamp, nonce, method, path, sent_hash)
        _check_signature(values[HEADER_SIGNATURE], signature(key, canonical))
        if not await self._nonces.remember(service, nonce):
            raise AuthError("nonce already used")
        return service


def _required_headers(headers: Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in SIGNATURE_HEADERS:
        value = headers.get(name)
        if not value:
            raise AuthError(f"missing header {name}")
        values[name] = value
    return values


def _canonical_request(
    service: str, timestamp: str, nonce: str, method: str, path: str, sent_hash: str
) -> str:
    # The other fields were checked already; these two come from the server.
    if not _METHOD.fullmatch(method):
        raise AuthError("invalid request method")
    if not _PATH.fullmatch(path):
        raise AuthError("invalid request path")
    return canonical_string(service, timestamp, nonce, method, path, sent_hash)


def _check_signature(sent: str, expected: str) -> None:
    # Both sides are 64 ASCII hex digits before compare_digest sees them: it
    # raises TypeError on non-ASCII text.
    if not _HEX_SHA256.fullmatch(sent) or not hmac.compare_digest(sent.lower(), expected):
        raise AuthError("invalid signature")
