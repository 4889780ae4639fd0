"""The Solana JSON-RPC wallet and the minting-service client against real
loopback servers: answers decoded, failures mapped to permanent, retryable
or snooze, and every minting request signed so the service's verifier passes."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from queue_service.core.base58 import b58encode
from queue_service.errors import PermanentError, RetryableError, Snooze
from queue_service.providers.devmint import DevelopmentMinter, DevelopmentWallet
from queue_service.providers.minting import MintingService, MintRequest, build_minter
from queue_service.providers.solana import SolanaRpc, build_wallet
from queue_service.providers.status import kind_status
from queue_service.settings import Settings, load_settings
from tests.support.fake_minting import FakeMinting
from tests.support.fake_solana import FakeSolana

SECRET = "unit-test-secret-0123456789abcdef-0123456789"
WALLET = b58encode(hashlib.sha256(b"minting wallet").digest())
CUSTOMER = b58encode(hashlib.sha256(b"customer").digest())


@pytest.fixture
def node() -> Iterator[FakeSolana]:
    with FakeSolana(balance_sol=0.25) as server:
        yield server


@pytest.fixture
def service() -> Iterator[FakeMinting]:
    with FakeMinting(SECRET) as server:
        yield server


def request(ticket: str = "tkt/1 a", key: str = "mint:tkt:u") -> MintRequest:
    return MintRequest("t1", ticket, "u", "e", CUSTOMER, key, {"name": "Seat"})


async def test_get_balance_reads_lamports_of_the_public_address_as_sol(node: FakeSolana) -> None:
    rpc = SolanaRpc(node.url, WALLET)
    try:
        assert await rpc.balance_sol() == 0.25
        node.balance_sol = 0
        assert await rpc.balance_sol() == 0
    finally:
        await rpc.aclose()
    assert node.calls == ["getBalance", "getBalance"]


async def test_signature_statuses_report_unknown_confirmed_and_failed(node: FakeSolana) -> None:
    node.signature_states = {
        "unknown": None,
        "failed": {"slot": 5, "confirmations": None, "err": {"InstructionError": [0, "x"]}},
    }
    rpc = SolanaRpc(node.url, WALLET)
    try:
        unknown, done, failed = await rpc.signature_statuses(["unknown", "done", "failed"])
    finally:
        await rpc.aclose()
    assert unknown is None
    assert done is not None and done.settled and done.confirmation == "finalized"
    assert failed is not None and not failed.settled and failed.err is not None


def rpc_error(code: int, message: str) -> dict[str, object]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": 1}


@pytest.mark.parametrize(
    ("status", "headers", "body", "raised"),
    [
        (200, {}, rpc_error(-32602, "Invalid param: WrongSize"), PermanentError),
        (400, {}, rpc_error(-32600, "Invalid request"), PermanentError),
        (200, {}, rpc_error(-32005, "Node is behind by 42 slots"), RetryableError),
        (503, {}, {"message": "unavailable"}, RetryableError),
        (429, {"retry-after": "7"}, {"message": "slow down"}, Snooze),
        (200, {}, {"jsonrpc": "2.0", "id": 1}, RetryableError),
    ],
)
async def test_solana_failures_map_to_permanent_retryable_or_snooze(
    node: FakeSolana, status: int, headers: dict[str, str], body: object, raised: type
) -> None:
    node.scripted.append((status, headers, json.dumps(body).encode()))
    rpc = SolanaRpc(node.url, WALLET)
    try:
        with pytest.raises(raised) as caught:
            await rpc.balance_sol()
    finally:
        await rpc.aclose()
    if raised is Snooze:
        assert caught.value.delay_seconds == 7  # type: ignore[attr-defined]
    if raised is PermanentError:
        assert caught.value.reason == "invalid_request"  # type: ignore[attr-defined]


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_node_is_retryable() -> None:
    rpc = SolanaRpc(f"http://127.0.0.1:{unused_port()}/", WALLET, timeout=2)
    try:
        with pytest.raises(RetryableError, match="solana unreachable"):
            await rpc.balance_sol()
    finally:
        await rpc.aclose()


def test_the_rpc_wallet_refuses_an_address_that_is_not_a_public_key() -> None:
    with pytest.raises(ValueError, match="SOLANA_WALLET_ADDRESS"):
        SolanaRpc("http://127.0.0.1:1/", "not-an-address")


async def test_a_signed_mint_passes_the_services_verifier_and_status_finds_it(
    service: FakeMinting,
) -> None:
    client = MintingService(service.url, "queue-service", SECRET)
    try:
        assert await client.status("t1", "tkt/1 a") is None  # percent-encoded path, signed
        result = await client.mint(request())
        again = await client.mint(request())  # same key: the service's replay
        found = await client.status("t1", "tkt/1 a")
    finally:
        await client.aclose()
    assert result.status == "minted" and result.mint_address and result.signature
    assert again == result and found == result
    assert service.refused == 0 and service.mint_count == {"tkt/1 a": 1}
    assert [(kind, key) for kind, _, key in service.requests] == [
        ("status", None),
        ("mint", "mint:tkt:u"),
        ("mint", "mint:tkt:u"),
        ("status", None),
    ]


async def test_a_wrong_secret_is_an_authentication_failure(service: FakeMinting) -> None:
    client = MintingService(service.url, "queue-service", "x" * 40)
    try:
        with pytest.raises(PermanentError) as caught:
            await client.mint(request())
    finally:
        await client.aclose()
    assert caught.value.reason == "authentication"
    assert service.refused == 1 and service.mints == {}


async def test_a_minting_service_500_is_retryable_and_mints_nothing(service: FakeMinting) -> None:
    service.fail_mints = 1
    client = MintingService(service.url, "queue-service", SECRET)
    try:
        with pytest.raises(RetryableError, match="HTTP 500"):
            await client.mint(request())
    finally:
        await client.aclose()
    assert service.mints == {}


async def test_without_urls_the_development_wallet_and_minter_stand_in() -> None:
    settings = Settings(queue_service_dev_wallet_balance_sol=3.5)
    assert kind_status(settings, "wallet").describe() == "development: development wallet"
    assert kind_status(settings, "minting").describe() == "development: development minter"
    wallet, minter = build_wallet(settings), build_minter(settings)
    assert isinstance(wallet, DevelopmentWallet) and isinstance(minter, DevelopmentMinter)
    assert await wallet.balance_sol() == 3.5
    first = await minter.mint(request())
    assert first == await minter.mint(request()) == await minter.status("t1", "tkt/1 a")
    assert first.status == "minted" and await minter.status("t1", "other") is None


def test_with_urls_the_real_providers_are_chosen() -> None:
    settings = Settings(
        solana_rpc_url="http://127.0.0.1:1/",
        solana_wallet_address=WALLET,
        minting_service_url="http://127.0.0.1:2",
        internal_hmac_secret=SECRET,
    )
    assert kind_status(settings, "wallet").describe() == "solana"
    assert kind_status(settings, "minting").describe() == "minting-service"
    assert isinstance(build_minter(settings), MintingService)


def test_the_minting_service_signs_with_this_services_own_secret_when_it_has_one() -> None:
    own = "own-secret-of-the-queue-service-0123456789"
    settings = Settings(
        internal_hmac_secret=SECRET,
        internal_hmac_secrets=json.dumps({"queue-service": own}),
    )
    assert settings.own_hmac_secret() == own
    assert Settings(internal_hmac_secret=SECRET).own_hmac_secret() == SECRET
    malformed = Settings(internal_hmac_secret=SECRET, internal_hmac_secrets="queue-service=x")
    assert malformed.own_hmac_secret() == SECRET
    with pytest.raises(ValueError, match="MINTING_SERVICE_URL is set but no HMAC secret"):
        build_minter(Settings(minting_service_url="http://127.0.0.1:2"))


@pytest.mark.parametrize("name", ["SOLANA_PRIVATE_KEY", "SOLANA_PRIVATE_KEY_FILE"])
def test_a_configured_solana_private_key_is_a_start_up_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "4wBqpZM9xaSheZzJSMawUKKwhdpChKbZ5eu5ky4Vigw9")
    with pytest.raises(ValidationError, match="SOLANA_PRIVATE_KEY is set") as caught:
        load_settings()
    assert "4wBqpZM9" not in str(caught.value)


def test_a_wallet_address_that_is_not_a_public_key_is_a_start_up_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOLANA_WALLET_ADDRESS", "0xde0b295669a9fd93d5f28d9ec85e40f4cb697bae")
    with pytest.raises(ValidationError, match="SOLANA_WALLET_ADDRESS must be"):
        load_settings()
