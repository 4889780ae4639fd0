"""Authentication through HTTP: forged, expired and malformed JWTs, and
HMAC-signed service requests (ServiceClient) with every way to break them.
Every failure is a 401 problem, never a 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from queue_service.client import ServiceClient
from queue_service.core.signing import sign_request
from tests.api.conftest import BASE_URL, HMAC_SECRET, JWT_SECRET, TENANT, Api, OpenApi

PROBLEM = "application/problem+json"
ECHO = {"type": "test.echo", "data": {"value": 1}}


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "u1",
        "tenant_id": TENANT,
        "roles": ["admin"],
        "iat": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict[str, Any], secret: str = JWT_SECRET, **headers: Any) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers or None)


def hand_signed(header: dict[str, Any], payload: dict[str, Any], key: bytes) -> str:
    """A JWT signed with HMAC-SHA256 over ``key``, whatever its header says."""
    signing_input = f"{b64(header)}.{b64(payload)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


async def get_queues(api: Api, token: str) -> httpx.Response:
    return await api.client.get("/queues", headers={"Authorization": f"Bearer {token}"})


def assert_401(response: httpx.Response, detail: str = "") -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["status"] == 401
    assert detail in body["detail"], body["detail"]


# --- JWT -----------------------------------------------------------------------------------


async def test_a_valid_token_is_accepted(api: Api) -> None:
    response = await get_queues(api, hs256(claims()))
    assert response.status_code == 200


def tampered_roles(api: Api) -> str:
    header, _, signature = api.token("u1", TENANT, "user").split(".")
    return ".".join((header, b64(claims(roles=["admin"])), signature))


FORGERIES: dict[str, Callable[[Api], str]] = {
    "alg-none": lambda api: f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}.",
    "alg-none-uppercase": lambda api: f"{b64({'alg': 'NONE'})}.{b64(claims())}.",
    "wrong-secret": lambda api: hs256(claims(), "another-secret-of-sufficient-length-0123456789"),
    "hs512-with-the-right-secret": lambda api: jwt.encode(claims(), JWT_SECRET, algorithm="HS512"),
    "expired": lambda api: hs256(claims(exp=int(time.time()) - 3600)),
    "not-yet-valid": lambda api: hs256(claims(nbf=int(time.time()) + 3600)),
    "missing-exp": lambda api: hs256(claims(exp=None)),
    "missing-sub": lambda api: hs256(claims(sub=None)),
    "missing-tenant": lambda api: hs256(claims(tenant_id=None)),
    "empty-tenant": lambda api: hs256(claims(tenant_id="")),
    "sub-not-a-string": lambda api: hs256(claims(sub=42)),
    "tenant-not-a-string": lambda api: hs256(claims(tenant_id=["t"])),
    "roles-not-a-list": lambda api: hs256(claims(roles="admin")),
    "unknown-role": lambda api: hs256(claims(roles=["superuser"])),
    "aud-without-configured-audience": lambda api: hs256(claims(aud="someone")),
    "tampered-payload": tampered_roles,
    "signature-stripped": lambda api: api.token("u1", TENANT, "admin").rsplit(".", 1)[0] + ".",
    "jku-to-attacker-key": lambda api: hs256(
        claims(), "attacker-secret-of-sufficient-length-0123456789", jku="https://evil.test/jwks"
    ),
    "kid-path-traversal": lambda api: hand_signed(
        {"alg": "HS256", "kid": "../../../../dev/null"}, claims(), b""
    ),
    "embedded-jwk": lambda api: hs256(
        claims(),
        "attacker-secret-of-sufficient-length-0123456789",
        jwk={"kty": "oct", "k": b64(b"attacker-secret-of-sufficient-length-0123456789")},
    ),
    "garbage": lambda api: "not-a-jwt",
    "two-segments": lambda api: f"{b64({'alg': 'HS256'})}.{b64(claims())}",
    "bad-base64": lambda api: "@@@.###.$$$",
    "non-json-header": lambda api: f"{b64(b'hello')}.{b64(claims())}.{b64(b'sig')}",
    "oversized": lambda api: hs256(claims(pad="x" * 9000)),
}


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the HS512 forgery
@pytest.mark.parametrize("make", FORGERIES.values(), ids=FORGERIES.keys())
async def test_a_forged_or_invalid_token_is_a_401_problem(
    api: Api, make: Callable[[Api], str]
) -> None:
    response = await get_queues(api, make(api))
    assert_401(response)


async def test_the_401_says_what_was_wrong_without_echoing_the_token(api: Api) -> None:
    token = hs256(claims(exp=int(time.time()) - 3600))
    response = await get_queues(api, token)

    assert_401(response, "token expired")
    assert token not in response.text
    assert_401(await get_queues(api, hs256(claims(tenant_id=None))), "tenant_id")


async def test_a_token_with_a_kid_header_is_verified_with_the_configured_key_only(
    api: Api,
) -> None:
    # kid is ignored: the configured key verifies, whatever the header names.
    response = await get_queues(api, hs256(claims(), kid="some-other-key"))
    assert response.status_code == 200


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer ", "Basic dTE6cGFzcw==", "Token abc", "Bearer a b c"],
)
async def test_a_missing_or_malformed_authorization_header_is_a_401(
    api: Api, authorization: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await api.client.get("/queues", headers=headers)
    assert_401(response)


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


async def test_rs256_app_refuses_hs256_tokens_signed_with_its_public_key(
    open_api: OpenApi, rsa_keys: tuple[str, str]
) -> None:
    private, public = rsa_keys
    async with open_api(jwt_secret=None, jwt_public_key=public, jwt_algorithm="RS256") as api:
        genuine = jwt.encode(claims(), private, algorithm="RS256")
        assert (await get_queues(api, genuine)).status_code == 200

        # The classic confusion: the public key (public!) used as an HMAC secret.
        confused = hand_signed({"alg": "HS256", "typ": "JWT"}, claims(), public.encode())
        assert_401(await get_queues(api, confused))
        stripped = hand_signed({"alg": "HS256"}, claims(), public.strip().encode())
        assert_401(await get_queues(api, stripped))
        # An HS256 token with the test secret is no good on an RS256 app either.
        assert_401(await get_queues(api, hs256(claims())))
        assert_401(await get_queues(api, f"{b64({'alg': 'none'})}.{b64(claims())}."))


async def test_issuer_and_audience_are_checked_when_configured(open_api: OpenApi) -> None:
    iss, aud = "https://auth.example.test", "queue-service"
    async with open_api(jwt_issuer=iss, jwt_audience=aud) as api:
        assert (await get_queues(api, hs256(claims(iss=iss, aud=aud)))).status_code == 200
        assert (await get_queues(api, hs256(claims(iss=iss, aud=[aud, "x"])))).status_code == 200

        assert_401(await get_queues(api, hs256(claims(iss="https://evil.test", aud=aud))), "issuer")
        assert_401(await get_queues(api, hs256(claims(iss=iss, aud="other-service"))), "audience")
        assert_401(await get_queues(api, hs256(claims(aud=aud))), "iss")
        assert_401(await get_queues(api, hs256(claims(iss=iss))), "aud")


# --- service HMAC ---------------------------------------------------------------------------


class Recorder(httpx.AsyncBaseTransport):
    """Forwards requests to the app, keeping each; ``change`` may alter one on the way."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        change: Callable[[httpx.Request], httpx.Request] | None = None,
    ) -> None:
        self.inner = inner
        self.change = change
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.change is not None:
            request = self.change(request)
        self.sent.append(request)
        return await self.inner.handle_async_request(request)


def service(
    api: Api,
    change: Callable[[httpx.Request], httpx.Request] | None = None,
    name: str = "order-service",
    secret: str = HMAC_SECRET,
    tenant: str = TENANT,
) -> tuple[ServiceClient, Recorder]:
    recorder = Recorder(api.transport, change)
    return ServiceClient(BASE_URL, name, secret, tenant, transport=recorder), recorder


def rebuilt(
    request: httpx.Request,
    *,
    url: str | httpx.URL | None = None,
    content: bytes | None = None,
    drop: tuple[str, ...] = (),
) -> httpx.Request:
    headers = {k: v for k, v in request.headers.items() if k not in {*drop, "content-length"}}
    return httpx.Request(
        request.method,
        url or request.url,
        headers=headers,
        content=request.content if content is None else content,
    )


def with_header(request: httpx.Request, name: str, value: str) -> httpx.Request:
    changed = rebuilt(request)
    changed.headers[name] = value
    return changed


async def test_a_signed_service_request_enqueues_as_the_service(api: Api) -> None:
    client, _ = service(api)
    async with client:
        response = await client.request("POST", "/jobs", ECHO)
        job = await client.enqueue("test.echo", {"value": 2}, idempotency_key="svc-1")

    assert response.status_code == 201, response.text
    assert response.json()["created_by"] == "service:order-service"
    assert response.json()["tenant_id"] == TENANT
    assert job["created_by"] == "service:order-service"
    assert api.job_count(TENANT) == 2


async def test_a_signed_service_batch_is_accepted(api: Api) -> None:
    client, _ = service(api, name="payment-service")
    async with client:
        response = await client.request("POST", "/jobs/batch", {"jobs": [ECHO, ECHO]})

    assert response.status_code == 201, response.text
    assert {j["created_by"] for j in response.json()["jobs"]} == {"service:payment-service"}


async def test_a_replayed_signed_request_is_refused(api: Api) -> None:
    client, recorder = service(api)
    async with client:
        first = await client.request("POST", "/jobs", ECHO)
    assert first.status_code == 201

    original = recorder.sent[0]
    replay = await api.client.send(rebuilt(original))

    assert_401(replay, "nonce already used")
    assert api.job_count() == 1


async def test_a_forged_request_does_not_burn_the_nonce(api: Api) -> None:
    body = json.dumps(ECHO).encode()
    good = sign_request(HMAC_SECRET, "order-service", "POST", "/jobs", body, nonce="n-1")
    forged = {**good, "x-internal-signature": "0" * 64}
    common = {"x-tenant-id": TENANT, "content-type": "application/json"}

    refused = await api.client.post("/jobs", content=body, headers={**forged, **common})
    accepted = await api.client.post("/jobs", content=body, headers={**good, **common})

    assert_401(refused, "invalid signature")
    assert accepted.status_code == 201, accepted.text


@pytest.mark.parametrize("offset", [-3600, -90, 90, 3600])
async def test_a_stale_or_future_timestamp_is_refused(api: Api, offset: int) -> None:
    body = json.dumps(ECHO).encode()
    headers = sign_request(
        HMAC_SECRET, "order-service", "POST", "/jobs", body, timestamp=int(time.time()) + offset
    )
    response = await api.client.post(
        "/jobs", content=body, headers={**headers, "x-tenant-id": TENANT}
    )

    assert_401(response, "timestamp")
    assert api.job_count() == 0


async def test_a_timestamp_within_the_window_is_accepted(api: Api) -> None:
    body = json.dumps(ECHO).encode()
    headers = sign_request(
        HMAC_SECRET, "order-service", "POST", "/jobs", body, timestamp=int(time.time()) - 30
    )
    response = await api.client.post(
        "/jobs",
        content=body,
        headers={**headers, "x-tenant-id": TENANT, "content-type": "application/json"},
    )
    assert response.status_code == 201, response.text


OTHER_BODY = b'{"type":"test.echo","data":{"value":2}}'
TAMPERINGS: dict[str, tuple[Callable[[httpx.Request], httpx.Request], str]] = {
    "body": (
        lambda r: rebuilt(r, content=r.content.replace(b'"value":1', b'"value":2')),
        "body hash",
    ),
    # An attacker can hash the new body; only the signature stops it.
    "body-and-its-hash": (
        lambda r: with_header(
            rebuilt(r, content=OTHER_BODY),
            "x-internal-body-hash",
            hashlib.sha256(OTHER_BODY).hexdigest(),
        ),
        "invalid signature",
    ),
    "path": (lambda r: rebuilt(r, url=r.url.copy_with(path="/jobs/batch")), "invalid signature"),
    "query-added": (lambda r: rebuilt(r, url=r.url.copy_with(query=b"x=1")), "invalid signature"),
    "service-name": (
        lambda r: with_header(r, "x-internal-service", "ticket-service"),
        "invalid signature",
    ),
    "nonce": (lambda r: with_header(r, "x-internal-nonce", "another-nonce"), "invalid signature"),
    "timestamp": (
        lambda r: with_header(
            r, "x-internal-timestamp", str(int(r.headers["x-internal-timestamp"]) - 1)
        ),
        "invalid signature",
    ),
    "no-tenant": (lambda r: rebuilt(r, drop=("x-tenant-id",)), "x-tenant-id"),
}


@pytest.mark.parametrize(("change", "detail"), TAMPERINGS.values(), ids=list(TAMPERINGS.keys()))
async def test_a_tampered_signed_request_is_refused(
    api: Api, change: Callable[[httpx.Request], httpx.Request], detail: str
) -> None:
    client, _ = service(api, change)
    async with client:
        response = await client.request("POST", "/jobs", ECHO)

    assert_401(response, detail)
    assert api.job_count() == 0


async def test_a_tampered_query_string_is_refused(api: Api) -> None:
    def strip_query(request: httpx.Request) -> httpx.Request:
        return rebuilt(request, url=request.url.copy_with(query=b"status=failed"))

    client, recorder = service(api, strip_query)
    async with client:
        response = await client.request("POST", "/jobs?status=waiting", ECHO)

    assert recorder.sent[0].url.query == b"status=failed"
    assert_401(response, "invalid signature")


async def test_a_signed_query_string_is_accepted(api: Api) -> None:
    client, _ = service(api)
    async with client:
        response = await client.request("POST", "/jobs?source=test", ECHO)
    assert response.status_code == 201, response.text


async def test_an_unknown_service_is_refused(api: Api) -> None:
    client, _ = service(api, name="evil-service")
    async with client:
        response = await client.request("POST", "/jobs", ECHO)

    assert_401(response, "unknown service")


async def test_a_request_signed_with_another_secret_is_refused(api: Api) -> None:
    client, _ = service(api, secret="not-the-secret-but-long-enough-0123456789abcdef")
    async with client:
        response = await client.request("POST", "/jobs", ECHO)

    assert_401(response, "invalid signature")


@pytest.mark.parametrize(
    "header",
    [
        "x-internal-service",
        "x-internal-timestamp",
        "x-internal-nonce",
        "x-internal-body-hash",
        "x-internal-signature",
    ],
)
async def test_a_missing_signature_header_is_refused(api: Api, header: str) -> None:
    client, _ = service(api, lambda r: rebuilt(r, drop=(header,)))
    async with client:
        response = await client.request("POST", "/jobs", ECHO)

    assert_401(response, header if header != "x-internal-signature" else "")
    assert api.job_count() == 0


@pytest.mark.parametrize("tenant", ["", "t" * 201, "tab\there", "del\x7f"])
async def test_an_unusable_tenant_header_is_refused(api: Api, tenant: str) -> None:
    def set_tenant(request: httpx.Request) -> httpx.Request:
        request.headers["x-tenant-id"] = tenant
        return request

    client, _ = service(api, set_tenant)
    async with client:
        response = await client.request("POST", "/jobs", ECHO)

    assert_401(response, "x-tenant-id")


async def test_signed_requests_are_refused_when_service_auth_is_not_configured(
    open_api: OpenApi,
) -> None:
    async with open_api(internal_hmac_secret=None) as api:
        client, _ = service(api)
        async with client:
            response = await client.request("POST", "/jobs", ECHO)

    assert_401(response, "not configured")
