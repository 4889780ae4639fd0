"""/health/ready names what serves each kind of outside work, development
stand-ins as such."""

from __future__ import annotations

from tests.api.conftest import OpenApi


async def test_ready_names_the_development_providers(open_api: OpenApi) -> None:
    async with open_api() as api:
        body = (await api.client.get("/health/ready")).json()
    assert body["checks"]["provider.payments"] == "development: payment sandbox"
    assert body["checks"]["provider.email"] == "development: email outbox"
