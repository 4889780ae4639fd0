"""User JWTs (SPEC §6): good tokens become principals; every forgery, expiry or
malformed input is an AuthError(401) with a safe detail, never another exception."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.request
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from queue_service.api.auth import AuthError, JwtVerifier, Principal, mint_token

SECRET = "s" * 40
OTHER_SECRET = "o" * 40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_by_hand(header: dict[str, Any], payload: Any, secret: bytes) -> str:
    """A token built without PyJWT, so nothing refuses to build a forgery."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "user-1",
        "tenant_id": "venue-7",
        "roles": ["user"],
        "iat": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict[str, Any], secret: str = SECRET, **headers: Any) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers or None)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def verifier() -> JwtVerifier:
    return JwtVerifier("HS256", SECRET)


@pytest.fixture
def rs_verifier(rsa_key: rsa.RSAPrivateKey) -> JwtVerifier:
    return JwtVerifier("RS256", public_pem(rsa_key))


def refused(verifier: JwtVerifier, token: str) -> AuthError:
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    assert info.value.status == 401
    return info.value


# --- good tokens ------------------------------------------------------------


def test_a_valid_hs256_token_becomes_its_principal(verifier: JwtVerifier) -> None:
    principal = verifier.verify(hs256(claims(roles=["admin", "user"])))
    assert principal == Principal(
        subject="user-1", tenant_id="venue-7", roles=frozenset({"admin", "user"})
    )
    assert not principal.is_service
    assert principal.has_any_role("admin", "venue_admin")


def test_a_valid_rs256_token_becomes_its_principal(
    rsa_key: rsa.RSAPrivateKey, rs_verifier: JwtVerifier
) -> None:
    token = jwt.encode(claims(roles=["venue_admin"]), private_pem(rsa_key), algorithm="RS256")
    principal = rs_verifier.verify(token)
    assert principal.tenant_id == "venue-7"
    assert principal.roles == frozenset({"venue_admin"})


def test_a_token_without_roles_authenticates_with_no_roles(verifier: JwtVerifier) -> None:
    principal = verifier.verify(hs256(claims(roles=None)))
    assert principal.roles == frozenset()
    assert not principal.has_any_role("admin", "venue_admin", "user")


def test_a_minted_token_verifies_with_its_issuer_and_audience() -> None:
    token = mint_token(
        SECRET,
        subject="dev",
        tenant_id="t1",
        roles=["admin"],
        issuer="https://auth.example",
        audience="queue-service",
    )
    principal = JwtVerifier(
        "HS256", SECRET, issuer="https://auth.example", audience="queue-service"
    ).verify(token)
    assert (principal.subject, principal.tenant_id) == ("dev", "t1")
    assert principal.roles == frozenset({"admin"})


def test_expiry_within_the_leeway_is_accepted(verifier: JwtVerifier) -> None:
    now = int(time.time())
    assert verifier.verify(hs256(claims(exp=now - 30))).subject == "user-1"


# --- forgeries and bad tokens -----------------------------------------------


def test_alg_none_is_refused(verifier: JwtVerifier) -> None:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims(roles=["admin"])).encode())
    assert refused(verifier, f"{header}.{payload}.").detail == "token algorithm not allowed"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "HS512", "RS256", "", None])
def test_any_algorithm_but_the_configured_one_is_refused(
    verifier: JwtVerifier, alg: str | None
) -> None:
    token = hs256_by_hand({"alg": alg, "typ": "JWT"}, claims(), SECRET.encode())
    refused(verifier, token)


def test_hs256_signed_with_the_rs256_public_key_is_refused(
    rsa_key: rsa.RSAPrivateKey, rs_verifier: JwtVerifier
) -> None:
    # The classic key-confusion attack: the public key is no secret, so a
    # verifier that let the token pick HS256 would accept this.
    forged = hs256_by_hand(
        {"alg": "HS256", "typ": "JWT"}, claims(roles=["admin"]), public_pem(rsa_key).encode()
    )
    assert refused(rs_verifier, forged).detail == "token algorithm not allowed"


def test_an_expired_token_beyond_the_leeway_is_refused(verifier: JwtVerifier) -> None:
    now = int(time.time())
    assert refused(verifier, hs256(claims(exp=now - 120))).detail == "token expired"


def test_a_token_issued_in_the_future_is_refused(verifier: JwtVerifier) -> None:
    now = int(time.time())
    token = hs256(claims(iat=now + 600, exp=now + 900))
    assert refused(verifier, token).detail == "token not yet valid"


@pytest.mark.parametrize("claim", ["exp", "sub", "tenant_id"])
def test_a_token_missing_a_required_claim_is_refused(verifier: JwtVerifier, claim: str) -> None:
    token = hs256(claims(**{claim: None}))
    assert refused(verifier, token).detail == f"token is missing claim {claim}"


def test_a_wrong_issuer_is_refused() -> None:
    verifier = JwtVerifier("HS256", SECRET, issuer="https://auth.example")
    assert refused(verifier, hs256(claims(iss="https://evil.example"))).detail == "invalid issuer"
    assert refused(verifier, hs256(claims())).detail == "token is missing claim iss"


def test_a_wrong_audience_is_refused() -> None:
    verifier = JwtVerifier("HS256", SECRET, audience="queue-service")
    assert refused(verifier, hs256(claims(aud="billing"))).detail == "invalid audience"
    assert refused(verifier, hs256(claims())).detail == "token is missing claim aud"


def test_an_audience_is_refused_when_none_is_configured(verifier: JwtVerifier) -> None:
    assert refused(verifier, hs256(claims(aud="billing"))).detail == "invalid audience"


def test_a_tampered_payload_is_refused(verifier: JwtVerifier) -> None:
    header, _, signature = hs256(claims()).split(".")
    other = b64url(json.dumps(claims(tenant_id="venue-8", roles=["admin"])).encode())
    assert refused(verifier, f"{header}.{other}.{signature}").detail == "invalid signature"


def test_a_token_signed_with_another_key_is_refused(
    verifier: JwtVerifier, rs_verifier: JwtVerifier
) -> None:
    assert refused(verifier, hs256(claims(), OTHER_SECRET)).detail == "invalid signature"
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), private_pem(attacker), algorithm="RS256")
    assert refused(rs_verifier, token).detail == "invalid signature"


def test_key_location_headers_are_ignored(
    rsa_key: rsa.RSAPrivateKey, rs_verifier: JwtVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched: list[object] = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: fetched.append(a))
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pointing_elsewhere = {
        "kid": "attacker-key",
        "jku": "https://evil.example/jwks.json",
        "x5u": "https://evil.example/cert.pem",
        "jwk": jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key(), as_dict=True),
    }
    forged = jwt.encode(
        claims(roles=["admin"]),
        private_pem(attacker),
        algorithm="RS256",
        headers=pointing_elsewhere,
    )
    assert refused(rs_verifier, forged).detail == "invalid signature"
    # The same headers on a token signed with the configured key change nothing.
    genuine = jwt.encode(
        claims(), private_pem(rsa_key), algorithm="RS256", headers=pointing_elsewhere
    )
    assert rs_verifier.verify(genuine).subject == "user-1"
    assert fetched == []


GARBAGE = [
    "",
    "x",
    "a.b",
    "a.b.c",
    "....",
    "é.é.é",
    "\x00.\x00.\x00",
    "Bearer abc.def.ghi",
    "x" * 10_000,
    "eyJ" + "A" * 10_000 + ".e30.",
    b64url(b"[1,2]") + "." + b64url(b"{}") + ".",
    b64url(b'{"alg":"HS256"}') + "." + b64url(b"not json") + ".AAAA",
    b64url(b'{"alg":"HS256"}') + "." + b64url(b"[]") + ".AAAA",
    b64url(b'{"alg":"HS256","kid":5}') + "." + b64url(b"{}") + ".AAAA",
    b64url(b'{"alg":"HS256","crit":["exp"]}') + "." + b64url(b"{}") + ".AAAA",
    b64url(b'{"alg":"HS256","b64":false,"crit":["b64"]}') + ".." + "AAAA",
    b64url(b"[" * 5000) + ".e30.AAAA",
]


@pytest.mark.parametrize("token", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_is_refused_without_echoing_it(verifier: JwtVerifier, token: str) -> None:
    error = refused(verifier, token)
    assert len(error.detail) < 80
    if len(token) > 3:
        assert token not in error.detail


def test_a_huge_well_signed_token_is_refused(verifier: JwtVerifier) -> None:
    assert refused(verifier, hs256(claims(pad="x" * 10_000))).detail == "token too large"


@pytest.mark.parametrize(
    ("roles", "detail"),
    [
        (["superuser"], "unknown role"),
        (["user", "root"], "unknown role"),
        ([1], "unknown role"),
        ([["admin"]], "unknown role"),
        ([{"admin": True}], "unknown role"),
        ("admin", "claim roles must be a list"),
        ({"admin": True}, "claim roles must be a list"),
    ],
)
def test_bad_roles_are_refused(verifier: JwtVerifier, roles: Any, detail: str) -> None:
    assert refused(verifier, hs256(claims(roles=roles))).detail == detail


@pytest.mark.parametrize("value", ["", "x" * 201, "a\nb", "tab\there", 123, ["t1"], {"a": 1}, True])
@pytest.mark.parametrize("claim", ["sub", "tenant_id"])
def test_unusable_subject_or_tenant_is_refused(
    verifier: JwtVerifier, claim: str, value: Any
) -> None:
    token = hs256_by_hand({"alg": "HS256", "typ": "JWT"}, claims(**{claim: value}), SECRET.encode())
    error = refused(verifier, token)
    assert claim in error.detail


# --- configuration ------------------------------------------------------------


def test_a_short_hs256_secret_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="JWT_SECRET must be at least 32 bytes") as info:
        JwtVerifier("HS256", "x" * 31)
    assert "secrets.token_urlsafe" in str(info.value)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        mint_token("short", subject="s", tenant_id="t", roles=[])


def test_a_pem_key_as_hs256_secret_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match="JWT_ALGORITHM=RS256"):
        JwtVerifier("HS256", public_pem(rsa_key))


@pytest.mark.parametrize("key", ["", "not a key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END"])
def test_an_unparsable_rs256_key_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="JWT_PUBLIC_KEY must be an RSA public key"):
        JwtVerifier("RS256", key)


def test_a_private_key_as_rs256_key_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError, match=r"openssl rsa -in private\.pem -pubout"):
        JwtVerifier("RS256", private_pem(rsa_key))


def test_a_short_rsa_key_is_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="1024-bit"):
        JwtVerifier("RS256", public_pem(small))


def test_an_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="HS256 or RS256"):
        JwtVerifier("ES256", SECRET)  # type: ignore[arg-type]


# --- properties -----------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_only_ever_raises_auth_error(text: str) -> None:
    verifier = JwtVerifier("HS256", SECRET)
    with pytest.raises(AuthError):
        verifier.verify(text)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
CLAIM_NAMES = st.sampled_from(
    ["exp", "sub", "tenant_id", "roles", "iat", "nbf", "iss", "aud", "jti"]
)


@settings(max_examples=300, deadline=None)
@given(
    header=st.dictionaries(st.sampled_from(["kid", "typ", "crit", "b64", "jku", "cty"]), JSON),
    payload=st.one_of(JSON, st.dictionaries(CLAIM_NAMES | st.text(max_size=8), JSON)),
)
def test_well_signed_arbitrary_claims_only_ever_raise_auth_error(
    header: dict[str, Any], payload: Any
) -> None:
    # Signed with the right key, so every claim check runs on hostile values.
    verifier = JwtVerifier("HS256", SECRET, issuer="iss", audience="aud")
    token = hs256_by_hand({**header, "alg": "HS256"}, payload, SECRET.encode())
    outcome: Principal | AuthError
    try:
        outcome = verifier.verify(token)
    except AuthError as error:
        outcome = error
    assert isinstance(outcome, Principal) or outcome.status == 401


def test_a_verified_token_is_remembered_until_it_expires() -> None:
    now = [time.time()]
    verifier = JwtVerifier("HS256", SECRET, leeway_seconds=0, clock=lambda: now[0])
    token = mint_token(SECRET, subject="u1", tenant_id="t1", roles=["user"], ttl_seconds=60)
    first = verifier.verify(token)
    assert verifier.verify(token) is first  # served from the cache
    now[0] += 61
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token)


def test_a_tampered_copy_of_a_remembered_token_is_still_checked() -> None:
    verifier = JwtVerifier("HS256", SECRET)
    token = mint_token(SECRET, subject="u1", tenant_id="t1", roles=["user"])
    verifier.verify(token)
    header, payload, signature = token.split(".")
    with pytest.raises(AuthError):
        verifier.verify(f"{header}.{payload}.{signature[:-2]}AA")


@pytest.mark.parametrize("tenant", [" ", " acme", "acme ", "\tacme"])
def test_a_tenant_id_with_surrounding_spaces_is_refused(tenant: str) -> None:
    verifier = JwtVerifier("HS256", SECRET)
    token = mint_token(SECRET, subject="u1", tenant_id=tenant, roles=["user"])
    with pytest.raises(AuthError, match="tenant_id"):
        verifier.verify(token)
