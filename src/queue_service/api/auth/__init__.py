"""Who is calling: user JWTs, service HMAC signatures, and the principal they yield.

Framework-independent: the API's dependencies call these and map AuthError to a
problem response; nothing here imports FastAPI or the store.
"""

from __future__ import annotations

from queue_service.api.auth.principal import ROLES, AuthError, Principal, Role, parse_identifier
from queue_service.api.auth.signing import HmacVerifier, NonceStore
from queue_service.api.auth.tokens import JwtVerifier, mint_token
from queue_service.core.signing import canonical_string, sign_request, signed_path

__all__ = [
    "ROLES",
    "AuthError",
    "HmacVerifier",
    "JwtVerifier",
    "NonceStore",
    "Principal",
    "Role",
    "canonical_string",
    "mint_token",
    "parse_identifier",
    "sign_request",
    "signed_path",
]
