"""User authentication: verify a bearer JWT into a Principal (SPEC §6).

The algorithm and key come from configuration only; the token's header never
chooses them (``alg``), and ``kid``/``jku``/``x5u``/``jwk`` are ignored: no key
is ever fetched. A token that carries ``aud`` is refused when no audience is
configured (RFC 7519 §4.1.3): set JWT_AUDIENCE to accept it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

from queue_service.api.auth.principal import ROLES, AuthError, Principal, Role, parse_identifier
from queue_service.api.auth.signing import hmac_key

Algorithm = Literal["HS256", "RS256"]

MIN_RSA_BITS: Final = 2048
# Far above any real token (a few hundred bytes to ~2 kB); refusing larger ones
# before parsing caps the work an unauthenticated caller can ask for.
MAX_TOKEN_LENGTH: Final = 8192
# Verified tokens remembered until they expire (a few MB at most).
VERIFIED_CACHE_SIZE: Final = 10_000
REQUIRED_CLAIMS: Final = ("exp", "sub", "tenant_id")

_ROLE_BY_NAME: Final[dict[str, Role]] = {role: role for role in ROLES}
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]*")

# Most specific first: several of these subclass one another.
_DETAILS: Final[tuple[tuple[type[jwt.PyJWTError], str], ...]] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidSignatureError, "invalid signature"),
    (jwt.InvalidAlgorithmError, "token algorithm not allowed"),
    (jwt.InvalidIssuerError, "invalid issuer"),
    (jwt.InvalidAudienceError, "invalid audience"),
    (jwt.InvalidIssuedAtError, "invalid iat claim"),
    (InvalidSubjectError, "invalid sub claim"),
    (InvalidJTIError, "invalid jti claim"),
    (jwt.DecodeError, "malformed token"),
)


def _check_secret(secret: str) -> bytes:
    key = hmac_key(secret, "JWT_SECRET")
    if key.lstrip().startswith((b"-----BEGIN", b"ssh-")):
        raise ValueError(
            "JWT_SECRET looks like a PEM or SSH key, not an HMAC secret; for RS256 set "
            "JWT_ALGORITHM=RS256 and JWT_PUBLIC_KEY to the public key PEM"
        )
    return key


def _load_public_key(pem: str) -> RSAPublicKey:
    how = (
        "JWT_PUBLIC_KEY must be an RSA public key in PEM form "
        "(-----BEGIN PUBLIC KEY-----); derive it from the private key with "
        "`openssl rsa -in private.pem -pubout`"
    )
    try:
        key = load_pem_public_key(pem.encode())
    except ValueError:
        raise ValueError(how) from None
    if not isinstance(key, RSAPublicKey):
        raise ValueError(how)
    if key.key_size < MIN_RSA_BITS:
        raise ValueError(
            f"JWT_PUBLIC_KEY is a {key.key_size}-bit RSA key; RS256 needs at least "
            f"{MIN_RSA_BITS} bits: issue tokens with a larger key"
        )
    return key


def _detail(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        # exc.claim is one of our fixed names (REQUIRED_CLAIMS, iss, aud).
        return f"token is missing claim {exc.claim}"
    for kind, detail in _DETAILS:
        if isinstance(exc, kind):
            return detail
    return "invalid token"


def _parse_roles(claims: dict[str, Any]) -> frozenset[Role]:
    # No roles claim: authenticated, with no role-bound permission.
    value = claims.get("roles")
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        raise AuthError("claim roles must be a list")
    roles: set[Role] = set()
    for item in value:
        role = _ROLE_BY_NAME.get(item) if isinstance(item, str) else None
        if role is None:
            raise AuthError("unknown role")
        roles.add(role)
    return frozenset(roles)


class JwtVerifier:
    """Verifies bearer tokens with one configured algorithm and key.

    Construction validates the key and raises ValueError saying how to fix it.
    """

    def __init__(
        self,
        algorithm: Algorithm,
        key: str,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_seconds: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._key: bytes | RSAPublicKey
        if algorithm == "HS256":
            self._key = _check_secret(key)
        elif algorithm == "RS256":
            self._key = _load_public_key(key)
        else:
            raise ValueError(f"JWT_ALGORITHM must be HS256 or RS256, not {algorithm!r}")
        if leeway_seconds < 0:
            raise ValueError("the JWT leeway must be zero or more seconds")
        self.algorithm: Algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.leeway_seconds = leeway_seconds
        self._jwt = jwt.PyJWT(options={"enforce_minimum_key_length": True})
        self._verified: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; AuthError(401) for anything else.

        A token verified once is remembered (by its exact text, signature
        included) until it expires: clients reuse a token for many requests,
        and the signature check is the costliest part of a request's auth.
        """
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires = cached
            if self._clock() <= expires + self.leeway_seconds:
                return principal
            del self._verified[token]
            raise AuthError("token expired")
        principal, expires = self._verify(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))  # the oldest entry
        self._verified[token] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("token too large")
        if not _TOKEN_SHAPE.fullmatch(token):
            raise AuthError("malformed token")
        try:
            claims = self._jwt.decode(
                token,
                self._key,
                algorithms=[self.algorithm],
                options={"require": list(REQUIRED_CLAIMS)},
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
            )
        except jwt.PyJWTError as exc:
            raise AuthError(_detail(exc)) from None
        principal = Principal(
            subject=parse_identifier(claims["sub"], "claim sub"),
            tenant_id=parse_identifier(claims["tenant_id"], "claim tenant_id"),
            roles=_parse_roles(claims),
        )
        return principal, float(claims["exp"])


def mint_token(
    secret: str,
    *,
    subject: str,
    tenant_id: str,
    roles: Iterable[Role],
    ttl_seconds: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """An HS256 token for development and tests (`queue-service token`)."""
    key = _check_secret(secret)
    role_list = sorted(set(roles))
    unknown = [r for r in role_list if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown roles {unknown}; roles are {sorted(ROLES)}")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "tenant_id": tenant_id,
        "roles": role_list,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, key, algorithm="HS256")
