"""Configuration from the environment: secrets from NAME or NAME_FILE, and
clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from queue_service.settings import default_data_dir, load_settings


def test_a_secret_can_come_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "jwt"
    secret.write_text("from-a-file-" + "x" * 32 + "\n")
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.setenv("JWT_SECRET_FILE", str(secret))
    settings = load_settings()
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == "from-a-file-" + "x" * 32
    assert "from-a-file" not in repr(settings)  # secrets never print


def test_the_variable_itself_wins_over_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "jwt"
    secret.write_text("file-value")
    monkeypatch.setenv("JWT_SECRET", "env-value")
    monkeypatch.setenv("JWT_SECRET_FILE", str(secret))
    settings = load_settings()
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == "env-value"


def test_bad_values_are_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_SERVICE_PROCESSORS", "no_colon_here")
    with pytest.raises(ValidationError, match="module:attribute"):
        load_settings()


def test_root_never_gets_a_data_directory_under_a_home() -> None:
    path = str(default_data_dir())
    assert not path.startswith("/root")


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    from queue_service.settings import Settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    missing = [
        name.upper()
        for name in Settings.model_fields
        if not any(f"`{name.upper()}`" in row for row in rows)
    ]
    assert missing == [], f"settings missing from the README's configuration table: {missing}"


@pytest.mark.parametrize("value", ["0", "-1", "121", "soon"])
def test_an_api_pool_wait_outside_0_to_120_seconds_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUEUE_SERVICE_API_POOL_TIMEOUT_SECONDS", value)
    with pytest.raises(ValidationError, match="queue_service_api_pool_timeout_seconds"):
        load_settings()


def test_the_api_pool_wait_is_read_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUEUE_SERVICE_API_POOL_TIMEOUT_SECONDS", raising=False)
    assert load_settings().queue_service_api_pool_timeout_seconds == 5.0
    monkeypatch.setenv("QUEUE_SERVICE_API_POOL_TIMEOUT_SECONDS", "0.25")
    assert load_settings().queue_service_api_pool_timeout_seconds == 0.25
