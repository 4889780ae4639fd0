"""Service HMAC signatures (SPEC §6): the exact signed text, a signed request
verifies once, and every tampering, stale timestamp or malformed header is an
AuthError(401), never another exception."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from queue_service.api.auth import AuthError, HmacVerifier, canonical_string, sign_request
from queue_service.client import ApiError, ServiceClient
from queue_service.core.signing import SIGNATURE_HEADERS, signed_path
from tests.support.nonces import MemoryNonceStore

SHARED = "shared-secret-" + "x" * 32
ORDER = "order-secret-" + "y" * 32
NOW = 1_700_000_000.0
ALLOWED = frozenset({"ticket-service", "order-service", "payment-service"})
BODY = b'{"type":"email.send","data":{"to":"a@example.com"}}'


@pytest.fixture
def nonces() -> MemoryNonceStore:
    return MemoryNonceStore()


@pytest.fixture
def verifier(nonces: MemoryNonceStore) -> HmacVerifier:
    return HmacVerifier({"*": SHARED, "order-service": ORDER}, ALLOWED, nonces, clock=lambda: NOW)


def signed(
    *,
    secret: str = SHARED,
    service: str = "ticket-service",
    method: str = "POST",
    path: str = "/jobs",
    body: bytes = BODY,
    age: int = 0,
    nonce: str = "nonce-1",
) -> dict[str, str]:
    return sign_request(secret, service, method, path, body, timestamp=int(NOW) - age, nonce=nonce)


async def refused(
    verifier: HmacVerifier,
    headers: dict[str, Any],
    method: str = "POST",
    path: str = "/jobs",
    body: bytes = BODY,
) -> str:
    with pytest.raises(AuthError) as info:
        await verifier.verify(headers, method, path, body)
    assert info.value.status == 401
    return info.value.detail


# --- the signed text --------------------------------------------------------------


def test_the_canonical_string_is_exactly_the_spec_text() -> None:
    text = canonical_string(
        "order-service", 1700000000, "n-1", "post", "/queues/q/jobs?status=waiting", "ab12"
    )
    assert text.encode() == (
        b"order-service\n1700000000\nn-1\nPOST\n/queues/q/jobs?status=waiting\nab12"
    )


def test_a_field_with_a_newline_cannot_be_signed() -> None:
    with pytest.raises(ValueError, match="newline"):
        canonical_string("svc", 1, "n", "GET", "/jobs\nGET", "ab")


def test_the_headers_carry_an_independently_computed_signature() -> None:
    headers = sign_request(
        SHARED, "ticket-service", "post", "/jobs?x=1", BODY, timestamp=1700000000, nonce="abc"
    )
    body_hash = hashlib.sha256(BODY).hexdigest()
    text = f"ticket-service\n1700000000\nabc\nPOST\n/jobs?x=1\n{body_hash}"
    assert headers == {
        "x-internal-service": "ticket-service",
        "x-internal-timestamp": "1700000000",
        "x-internal-nonce": "abc",
        "x-internal-body-hash": body_hash,
        "x-internal-signature": hmac.new(
            SHARED.encode(), text.encode(), hashlib.sha256
        ).hexdigest(),
    }


def test_each_signature_gets_a_fresh_nonce() -> None:
    first = sign_request(SHARED, "ticket-service", "GET", "/queues", b"")
    again = sign_request(SHARED, "ticket-service", "GET", "/queues", b"")
    assert first["x-internal-nonce"] != again["x-internal-nonce"]


@pytest.mark.parametrize(
    ("raw_path", "query", "expected"),
    [
        (b"/jobs", b"", "/jobs"),
        (
            b"/queues/a%20b/jobs",
            b"status=waiting&limit=5",
            "/queues/a%20b/jobs?status=waiting&limit=5",
        ),
        ("/jobs", "", "/jobs"),
    ],
)
def test_the_signed_path_is_the_raw_target_with_its_query(
    raw_path: bytes | str, query: bytes | str, expected: str
) -> None:
    assert signed_path(raw_path, query) == expected


# --- accepted once ----------------------------------------------------------------


async def test_a_signed_request_verifies_as_its_service(verifier: HmacVerifier) -> None:
    assert await verifier.verify(signed(), "POST", "/jobs", BODY) == "ticket-service"


async def test_a_service_with_its_own_secret_signs_with_it(verifier: HmacVerifier) -> None:
    headers = signed(secret=ORDER, service="order-service")
    assert await verifier.verify(headers, "POST", "/jobs", BODY) == "order-service"


async def test_a_service_with_its_own_secret_cannot_use_the_shared_one(
    verifier: HmacVerifier,
) -> None:
    headers = signed(secret=SHARED, service="order-service")
    assert await refused(verifier, headers) == "invalid signature"


async def test_a_replayed_nonce_is_refused(verifier: HmacVerifier) -> None:
    await verifier.verify(signed(), "POST", "/jobs", BODY)
    assert await refused(verifier, signed()) == "nonce already used"


async def test_a_forged_request_does_not_spend_the_nonce(
    verifier: HmacVerifier, nonces: MemoryNonceStore
) -> None:
    forged = signed(secret="f" * 40, nonce="precious")
    assert await refused(verifier, forged) == "invalid signature"
    assert nonces.seen == set()
    assert await verifier.verify(signed(nonce="precious"), "POST", "/jobs", BODY)


async def test_signatures_are_case_insensitive_hex(verifier: HmacVerifier) -> None:
    headers = signed()
    headers["x-internal-signature"] = headers["x-internal-signature"].upper()
    assert await verifier.verify(headers, "POST", "/jobs", BODY) == "ticket-service"


# --- the time window ----------------------------------------------------------------


@pytest.mark.parametrize("age", [59, -59, 60, -60, 0])
async def test_a_timestamp_within_sixty_seconds_is_accepted(
    verifier: HmacVerifier, age: int
) -> None:
    assert await verifier.verify(signed(age=age), "POST", "/jobs", BODY) == "ticket-service"


@pytest.mark.parametrize("age", [61, -61, 3600, int(NOW)])
async def test_a_timestamp_more_than_sixty_seconds_off_is_refused(
    verifier: HmacVerifier, age: int
) -> None:
    assert await refused(verifier, signed(age=age)) == "timestamp outside the allowed window"


@pytest.mark.parametrize(
    "value",
    [
        "1e9",
        " 1700000000",
        "+1700000000",
        "-5",
        "\u0661\u0667" + "\u0660" * 8,
        "1_700_000_000",
        "9" * 40,
    ],
)
async def test_a_malformed_timestamp_is_refused(verifier: HmacVerifier, value: str) -> None:
    headers = {**signed(), "x-internal-timestamp": value}
    assert await refused(verifier, headers) == "invalid header x-internal-timestamp"


def test_nonces_are_kept_for_both_sides_of_the_window(verifier: HmacVerifier) -> None:
    assert verifier.nonce_retention_seconds >= 2 * verifier.window_seconds


# --- tampering ---------------------------------------------------------------------


async def test_a_tampered_body_is_refused(verifier: HmacVerifier) -> None:
    other = BODY.replace(b"a@example.com", b"b@example.com")
    assert await refused(verifier, signed(), body=other) == "body hash does not match the body"


async def test_a_tampered_body_with_a_matching_hash_is_refused(verifier: HmacVerifier) -> None:
    other = BODY.replace(b"a@example.com", b"b@example.com")
    headers = {**signed(), "x-internal-body-hash": hashlib.sha256(other).hexdigest()}
    assert await refused(verifier, headers, body=other) == "invalid signature"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/jobs"),
        ("POST", "/jobs/batch"),
        ("POST", "/jobs?queue=payments"),
        ("POST", "/Jobs"),
    ],
)
async def test_a_different_method_or_path_is_refused(
    verifier: HmacVerifier, method: str, path: str
) -> None:
    assert await refused(verifier, signed(), method=method, path=path) == "invalid signature"


async def test_a_tampered_query_string_is_refused(verifier: HmacVerifier) -> None:
    headers = signed(method="GET", path="/queues/q/jobs?status=failed&limit=5", body=b"")
    tampered = "/queues/q/jobs?status=failed&limit=500"
    assert await refused(verifier, headers, "GET", tampered, b"") == "invalid signature"
    assert await refused(verifier, headers, "GET", "/queues/q/jobs", b"") == "invalid signature"


async def test_a_method_in_another_case_is_the_same_request(verifier: HmacVerifier) -> None:
    assert await verifier.verify(signed(method="post"), "POST", "/jobs", BODY)


@pytest.mark.parametrize(
    ("method", "path"),
    [("PO ST", "/jobs"), ("POST", "/jobs\nx"), ("POST", "jobs"), ("POST", "/jobs é")],
)
async def test_an_impossible_request_line_is_refused(
    verifier: HmacVerifier, method: str, path: str
) -> None:
    detail = await refused(verifier, signed(), method=method, path=path)
    assert detail in {"invalid request method", "invalid request path"}


# --- services and headers ----------------------------------------------------------


async def test_an_unknown_service_is_refused(verifier: HmacVerifier) -> None:
    headers = signed(service="mallory-service")
    assert await refused(verifier, headers) == "unknown service"


def test_an_allowed_service_without_a_secret_is_refused_at_construction(
    nonces: MemoryNonceStore,
) -> None:
    with pytest.raises(ValueError, match=r"\['ticket-service'\] are allowed but have no HMAC"):
        HmacVerifier(
            {"order-service": ORDER}, frozenset({"order-service", "ticket-service"}), nonces
        )


def test_a_short_secret_is_refused_at_construction(nonces: MemoryNonceStore) -> None:
    with pytest.raises(ValueError, match="INTERNAL_HMAC_SECRET must be at least 32 bytes"):
        HmacVerifier({"*": "short"}, ALLOWED, nonces)
    with pytest.raises(ValueError, match="'order-service' must be at least 32 bytes"):
        HmacVerifier({"*": SHARED, "order-service": "short"}, ALLOWED, nonces)


def test_a_service_name_that_cannot_be_signed_is_refused(nonces: MemoryNonceStore) -> None:
    with pytest.raises(ValueError, match="INTERNAL_ALLOWED_SERVICES"):
        HmacVerifier({"*": SHARED}, frozenset({"bad\nname"}), nonces)


def test_no_allowed_services_needs_no_secret(nonces: MemoryNonceStore) -> None:
    HmacVerifier({}, frozenset(), nonces)


@pytest.mark.parametrize("header", SIGNATURE_HEADERS)
@pytest.mark.parametrize("present_as", ["absent", "empty"])
async def test_a_missing_header_is_refused(
    verifier: HmacVerifier, header: str, present_as: str
) -> None:
    headers = signed()
    if present_as == "absent":
        del headers[header]
    else:
        headers[header] = ""
    assert await refused(verifier, headers) == f"missing header {header}"


@pytest.mark.parametrize("value", ["", "zz", "0" * 63, "0" * 65, "g" * 64, "é" * 64, "0" * 64])
async def test_a_wrong_body_hash_is_refused(verifier: HmacVerifier, value: str) -> None:
    headers = signed()
    headers["x-internal-body-hash"] = value
    assert await refused(verifier, headers) in {
        "missing header x-internal-body-hash",
        "invalid header x-internal-body-hash",
        "body hash does not match the body",
    }


@pytest.mark.parametrize(
    "value",
    ["abc", "0" * 63, "0" * 65, "0" * 64, "g" * 64, "é" * 64, "\u0660" * 64, " " + "0" * 63],
)
async def test_a_malformed_signature_is_refused_not_an_exception(
    verifier: HmacVerifier, value: str
) -> None:
    headers = {**signed(), "x-internal-signature": value}
    assert await refused(verifier, headers) == "invalid signature"


@pytest.mark.parametrize("value", ["n" * 129, "has space", "é", "a.b", "a/b", "a\nb"])
async def test_a_malformed_nonce_is_refused(verifier: HmacVerifier, value: str) -> None:
    headers = {**signed(), "x-internal-nonce": value}
    assert await refused(verifier, headers) == "invalid header x-internal-nonce"


def test_a_nonce_that_would_be_refused_cannot_be_signed() -> None:
    with pytest.raises(ValueError, match="nonce"):
        sign_request(SHARED, "ticket-service", "GET", "/jobs", b"", nonce="a b")


HEADER_VALUES = st.one_of(st.text(max_size=80), st.sampled_from(["1700000000", "0" * 64]))


@settings(max_examples=300, deadline=None)
@given(
    values=st.fixed_dictionaries({}, optional={name: HEADER_VALUES for name in SIGNATURE_HEADERS}),
    method=st.text(max_size=10),
    path=st.text(max_size=40),
    body=st.binary(max_size=64),
)
async def test_arbitrary_headers_only_ever_raise_auth_error(
    values: dict[str, str], method: str, path: str, body: bytes
) -> None:
    verifier = HmacVerifier({"*": SHARED}, ALLOWED, MemoryNonceStore(), clock=lambda: NOW)
    headers = {**values, "x-internal-service": values.get("x-internal-service", "order-service")}
    with pytest.raises(AuthError):
        await verifier.verify(headers, method, path, body)


@settings(max_examples=300, deadline=None)
@given(
    header=st.sampled_from(SIGNATURE_HEADERS), value=st.text(max_size=80), path=st.text(max_size=40)
)
async def test_one_altered_header_or_path_only_ever_raises_auth_error(
    header: str, value: str, path: str
) -> None:
    # Everything else valid, so the checks after the first one meet hostile input too.
    verifier = HmacVerifier({"*": SHARED}, ALLOWED, MemoryNonceStore(), clock=lambda: NOW)
    headers = signed()
    assume(headers[header].lower() != value.lower())
    headers[header] = value
    with pytest.raises(AuthError):
        await verifier.verify(headers, "POST", "/jobs", BODY)
    assume(path != "/jobs")
    with pytest.raises(AuthError):
        await verifier.verify(signed(nonce="other"), "POST", path, BODY)


# --- the client signs what it sends -----------------------------------------------


def asgi_like_path(request: httpx.Request) -> str:
    """What the server passes to verify: raw path and query as an ASGI server splits them."""
    raw_path, _, query = request.url.raw_path.partition(b"?")
    return signed_path(raw_path, query)


async def test_a_service_client_request_verifies_on_the_server(
    nonces: MemoryNonceStore,
) -> None:
    verifier = HmacVerifier({"*": SHARED, "order-service": ORDER}, ALLOWED, nonces)
    seen: list[tuple[str, str | None, str | None]] = []

    async def server(request: httpx.Request) -> httpx.Response:
        path = asgi_like_path(request)
        service = await verifier.verify(request.headers, request.method, path, request.content)
        seen.append((path, request.headers.get("x-tenant-id"), request.headers.get("content-type")))
        return httpx.Response(201, json={"id": "j1", "service": service})

    async with ServiceClient(
        "http://queue.test/api",
        "order-service",
        ORDER,
        "venue-7",
        transport=httpx.MockTransport(server),
    ) as client:
        job = await client.enqueue("email.send", {"to": "a@example.com"}, priority=3)
        listing = await client.request("GET", "/queues/q%20a/jobs?status=waiting&limit=5")

    assert job == {"id": "j1", "service": "order-service"}
    assert listing.status_code == 201
    assert seen == [
        ("/api/jobs", "venue-7", "application/json"),
        ("/api/queues/q%20a/jobs?status=waiting&limit=5", "venue-7", None),
    ]


async def test_an_enqueue_error_response_raises_the_problem() -> None:
    async def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json={"detail": "unknown job type"})

    async with ServiceClient(
        "http://queue.test",
        "order-service",
        ORDER,
        "venue-7",
        transport=httpx.MockTransport(server),
    ) as client:
        with pytest.raises(ApiError) as raised:
            await client.enqueue("nope", {})
    assert (raised.value.status, raised.value.detail) == (422, "unknown job type")
    assert raised.value.title == "Unprocessable Entity"  # no title sent: the reason phrase


async def test_an_error_that_is_not_a_problem_still_raises_with_its_text() -> None:
    async def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            502, text="<html>bad gateway</html>", headers={"x-request-id": "req-1"}
        )

    async with ServiceClient(
        "http://queue.test",
        "order-service",
        ORDER,
        "venue-7",
        transport=httpx.MockTransport(server),
    ) as client:
        with pytest.raises(ApiError) as raised:
            await client.enqueue("email.send", {})
    error = raised.value
    assert (error.status, error.title, error.request_id) == (502, "Bad Gateway", "req-1")
    assert error.detail == "<html>bad gateway</html>"
    assert error.problem == {} and error.errors == []
