"""The API's configuration is checked at start-up with messages that say how
to fix it; per-service HMAC secrets override the shared one."""

from __future__ import annotations

from pathlib import Path

import pytest

from queue_service.api.state import ConfigurationError, build_hmac_verifier, build_jwt_verifier
from queue_service.core.signing import sign_request
from queue_service.settings import Settings
from tests.support.nonces import MemoryNonceStore

SHARED = "shared-secret-for-every-service-0123456789"
ORDERS = "order-service-own-secret-0123456789abcdef"


async def test_a_per_service_secret_replaces_the_shared_one_for_that_service() -> None:
    settings = Settings(
        internal_hmac_secret=SHARED,
        internal_hmac_secrets=f'{{"order-service": "{ORDERS}"}}',
    )
    verifier = build_hmac_verifier(settings, MemoryNonceStore())  # type: ignore[arg-type]
    assert verifier is not None
    own = sign_request(ORDERS, "order-service", "POST", "/jobs", b"{}")
    assert await verifier.verify(own, "POST", "/jobs", b"{}") == "order-service"
    shared = sign_request(SHARED, "order-service", "POST", "/jobs", b"{}")
    with pytest.raises(Exception, match="signature"):
        await verifier.verify(shared, "POST", "/jobs", b"{}")
    other = sign_request(SHARED, "ticket-service", "POST", "/jobs", b"{}")
    assert await verifier.verify(other, "POST", "/jobs", b"{}") == "ticket-service"


def test_malformed_per_service_secrets_say_what_is_expected() -> None:
    settings = Settings(internal_hmac_secrets="order-service=abc")
    with pytest.raises(ConfigurationError, match="JSON object"):
        build_hmac_verifier(settings, MemoryNonceStore())  # type: ignore[arg-type]


def test_no_service_secret_means_no_service_auth() -> None:
    assert build_hmac_verifier(Settings(), MemoryNonceStore()) is None  # type: ignore[arg-type]


def test_production_refuses_to_start_without_a_jwt_key() -> None:
    with pytest.raises(ConfigurationError, match="JWT_SECRET"):
        build_jwt_verifier(Settings(queue_service_env="production"))


def test_development_generates_one_key_per_data_directory(tmp_path: Path) -> None:
    settings = Settings(queue_service_env="development", queue_service_data_dir=tmp_path)
    first = build_jwt_verifier(settings)
    again = build_jwt_verifier(
        Settings(queue_service_env="development", queue_service_data_dir=tmp_path)
    )
    assert first.algorithm == again.algorithm == "HS256"
    key_file = tmp_path / "dev-jwt-secret"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert len(key_file.read_text()) >= 32


def test_a_short_jwt_secret_is_refused_with_how_to_make_one() -> None:
    with pytest.raises(ConfigurationError, match="token_urlsafe"):
        build_jwt_verifier(Settings(jwt_secret="short"))
