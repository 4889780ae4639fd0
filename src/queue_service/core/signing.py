"""Signing a platform service request: HMAC-SHA256 over the canonical text
of SPEC §6. The API verifies with it (api/auth/signing.py); the client and
the providers that call internal services sign with it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from secrets import token_urlsafe
from typing import Final

HEADER_SERVICE: Final = "x-internal-service"
HEADER_TIMESTAMP: Final = "x-internal-timestamp"
HEADER_NONCE: Final = "x-internal-nonce"
HEADER_BODY_HASH: Final = "x-internal-body-hash"
HEADER_SIGNATURE: Final = "x-internal-signature"
SIGNATURE_HEADERS: Final = (
    HEADER_SERVICE,
    HEADER_TIMESTAMP,
    HEADER_NONCE,
    HEADER_BODY_HASH,
    HEADER_SIGNATURE,
)
_NONCE = re.compile(r"[A-Za-z0-9_-]{1,128}")


def signed_path(raw_path: str | bytes, query_string: str | bytes = "") -> str:
    """The ``path`` of the signed text: raw path, plus ``?query`` if non-empty."""
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path
    query = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    return f"{path}?{query}" if query else path


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def canonical_string(
    service: str, timestamp: int | str, nonce: str, method: str, path: str, body_hash: str
) -> str:
    """The exact text that is signed; a field with a newline is refused."""
    fields = (service, str(timestamp), nonce, method.upper(), path, body_hash)
    if any("\n" in field for field in fields):
        raise ValueError("a signed field must not contain a newline")
    return "\n".join(fields)


def signature(secret: bytes, canonical: str) -> str:
    return hmac.new(secret, canonical.encode(), hashlib.sha256).hexdigest()


def sign_request(
    secret: str,
    service: str,
    method: str,
    path: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The five ``x-internal-*`` headers for one request (a fresh nonce each call)."""
    ts = int(time.time()) if timestamp is None else timestamp
    nonce = token_urlsafe(24) if nonce is None else nonce
    if not _NONCE.fullmatch(nonce):
        raise ValueError("a nonce is 1 to 128 characters of A-Z, a-z, 0-9, '_' and '-'")
    digest = body_hash(body)
    signed = signature(secret.encode(), canonical_string(service, ts, nonce, method, path, digest))
    return {
        HEADER_SERVICE: service,
        HEADER_TIMESTAMP: str(ts),
        HEADER_NONCE: nonce,
        HEADER_BODY_HASH: digest,
        HEADER_SIGNATURE: signed,
    }
