"""/health: live answers without the database; ready checks the database and
probes every configured provider (cheap reachability requests to local
Stripe-, SMTP-, Solana-, minting-, Twilio- and analytics-shaped servers),
names development stand-ins as such, caches the probes and answers 503 when
a required one fails; startup waits for the workers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from queue_service.api.state import ApiState
from queue_service.cli.service import _mark_started
from queue_service.providers import health
from queue_service.providers.health import ProviderHealth
from queue_service.settings import Settings
from queue_service.testing.stripe import FakeStripe
from tests.api.conftest import Api, OpenApi
from tests.support.analytics_server import FakeAnalytics
from tests.support.fake_minting import FakeMinting
from tests.support.fake_solana import FakeSolana
from tests.support.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio
from tests.support.money import TEST_STRIPE_KEY
from tests.support.smtp_server import SmtpServer, smtp_server

WALLET = "So11111111111111111111111111111111111111112"
HMAC = "health-tests-hmac-secret-0123456789-abcdefgh"


def closed_port() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Vendors:
    """Every provider's local stand-in, running."""

    def __init__(self, smtp: SmtpServer) -> None:
        self.smtp = smtp
        self.stripe = FakeStripe()
        self.solana = FakeSolana()
        self.minting = FakeMinting(HMAC)
        self.twilio = FakeTwilio()
        self.analytics = FakeAnalytics("queue-service", HMAC)

    def settings(self) -> dict[str, Any]:
        return {
            "stripe_api_base": self.stripe.url,
            "smtp_host": self.smtp.host,
            "smtp_port": self.smtp.port,
            "smtp_tls": "none",
            "solana_rpc_url": self.solana.url,
            "solana_wallet_address": WALLET,
            "minting_service_url": self.minting.url,
            "twilio_account_sid": ACCOUNT_SID,
            "twilio_from_number": FROM_NUMBER,
            "twilio_api_base": self.twilio.base_url,
            "analytics_service_url": self.analytics.url,
        }


@pytest.fixture
def vendors(monkeypatch: pytest.MonkeyPatch) -> Iterator[Vendors]:
    monkeypatch.setenv("STRIPE_SECRET_KEY", TEST_STRIPE_KEY)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    with smtp_server() as smtp:
        v = Vendors(smtp)
        v.stripe.start()
        with v.solana, v.minting, v.twilio, v.analytics:
            yield v
        v.stripe.stop()


@pytest.fixture
async def configured(open_api: OpenApi, vendors: Vendors) -> AsyncIterator[Api]:
    async with open_api(**vendors.settings()) as api:
        yield api


async def ready(api: Api) -> tuple[int, dict[str, str]]:
    response = await api.client.get("/health/ready")
    return response.status_code, response.json()["checks"]


async def test_ready_names_the_development_providers(open_api: OpenApi) -> None:
    async with open_api() as api:
        status, checks = await ready(api)
    assert status == 200
    assert checks["provider.payments"] == "development: payment sandbox"
    assert checks["provider.email"] == "development: email outbox"


async def test_ready_probes_every_configured_provider_without_charging_or_sending(
    configured: Api, vendors: Vendors
) -> None:
    status, checks = await ready(configured)
    assert status == 200, checks
    assert {k: v for k, v in checks.items() if k.startswith("provider.")} == {
        "provider.payments": "stripe: ok",
        "provider.wallet": "solana: ok",
        "provider.minting": "minting-service: ok",
        "provider.email": "smtp: ok",
        "provider.sms": "twilio: ok",
        "provider.analytics": "analytics-service: ok",
    }
    assert vendors.solana.calls == ["getHealth"]
    assert vendors.stripe.charge_count == 0 and not vendors.stripe.posts("/v1/payment_intents")
    assert vendors.smtp.messages == [] and vendors.twilio.of("Messages.json") == []
    assert vendors.minting.requests == [] and vendors.analytics.received == []


async def test_a_required_provider_down_makes_ready_503_naming_it(
    open_api: OpenApi, vendors: Vendors
) -> None:
    async with open_api(**{**vendors.settings(), "stripe_api_base": closed_port()}) as api:
        status, checks = await ready(api)
    assert status == 503
    assert checks["database"] == "ok"
    assert checks["provider.payments"].startswith("stripe: unreachable: ConnectError")
    assert checks["provider.email"] == "smtp: ok"


async def test_an_unhealthy_solana_node_makes_ready_503(configured: Api, vendors: Vendors) -> None:
    vendors.solana.healthy = False
    status, checks = await ready(configured)
    assert status == 503
    assert checks["provider.wallet"] == (
        "solana: unreachable: ConnectionError: node unhealthy: Node is behind by 42 slots"
    )


async def test_an_optional_provider_down_is_reported_but_ready_stays_200(
    open_api: OpenApi, vendors: Vendors
) -> None:
    settings = {**vendors.settings(), "analytics_service_url": closed_port()}
    async with open_api(**settings) as api:
        status, checks = await ready(api)
    assert status == 200
    assert checks["provider.analytics"].startswith("analytics-service: unreachable")
    assert checks["provider.analytics"].endswith("(optional)")


async def test_a_silent_provider_is_cut_off_by_the_probe_timeout(
    open_api: OpenApi, vendors: Vendors, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "PROBE_TIMEOUT_SECONDS", 0.3)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        async with open_api(**{**vendors.settings(), "smtp_port": port}) as api:
            started = asyncio.get_running_loop().time()
            status, checks = await ready(api)
            elapsed = asyncio.get_running_loop().time() - started
    assert status == 503
    assert checks["provider.email"] == "smtp: no answer within 0.3 s"
    assert elapsed < 2


async def test_probes_are_cached_so_readiness_polls_cannot_hammer_providers(
    configured: Api, vendors: Vendors
) -> None:
    now = [0.0]
    probes = ProviderHealth(configured.state.settings, clock=lambda: now[0])
    configured.state.provider_health = probes
    await asyncio.gather(*(ready(configured) for _ in range(10)))
    now[0] += health.CACHE_SECONDS - 0.1
    await ready(configured)
    assert vendors.solana.calls == ["getHealth"]
    assert probes.rounds == 1
    now[0] += 0.2
    await ready(configured)
    assert vendors.solana.calls == ["getHealth", "getHealth"]


async def test_live_answers_without_the_database_and_ready_does_not(api: Api) -> None:
    await api.runtime.db.close()  # what ready asks; live asks nothing
    assert (await api.client.get("/health/live")).status_code == 200
    status, checks = await ready(api)
    assert status == 503
    assert checks["database"].startswith("unavailable")


async def test_startup_is_ok_only_once_the_workers_claim(api: Api) -> None:
    state: ApiState = api.state
    state.started = False
    workers, stop = asyncio.Event(), asyncio.Event()
    marker = asyncio.create_task(_mark_started(state, workers, stop))
    await asyncio.sleep(0)
    assert (await api.client.get("/health/startup")).status_code == 503
    workers.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert (await api.client.get("/health/startup")).status_code == 200
    stop.set()
    await marker


def test_an_unknown_optional_provider_kind_is_refused_with_a_suggestion() -> None:
    hint = r"unknown provider kind 'analytic'.*did you mean 'analytics'"
    with pytest.raises(ValueError, match=hint):
        Settings(queue_service_ready_optional_providers="analytic")
    chosen = Settings(queue_service_ready_optional_providers="sms, email")
    assert chosen.ready_optional_providers == {"sms", "email"}
