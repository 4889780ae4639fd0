"""Alert rules as configuration: SPEC §8's defaults, JSON overrides, and
start-up errors that name the setting and say what to change."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from queue_service.core.alerts import DEFAULT_RULES, parse_alert_rules
from queue_service.settings import Settings


def test_the_defaults_are_the_spec_table() -> None:
    table = {
        name: (r.measure, r.queue, r.threshold, r.severity, r.channels, r.cooldown_seconds)
        for name, r in DEFAULT_RULES.items()
    }

    assert table == {
        "money_queue_depth": ("queue_depth", "money", 50, "critical", ("sms", "call"), 300),
        "money_oldest_waiting": ("oldest_waiting", "money", 600, "critical", ("sms", "call"), 300),
        "money_failures": ("failures", "money", 10, "critical", ("sms", "call"), 300),
        "communication_queue_depth": (
            *("queue_depth", "communication", 5000, "warning", ("sms",), 3600),
        ),
        "background_queue_depth": ("queue_depth", "background", 50_000, "warning", ("log",), 3600),
        "solana_wallet_low": ("wallet_balance", None, 0.01, "warning", ("log", "sms"), 3600),
    }
    assert DEFAULT_RULES["money_failures"].window_seconds == 900


def test_thresholds_are_strict_above_and_the_wallet_strict_below() -> None:
    depth, wallet = DEFAULT_RULES["money_queue_depth"], DEFAULT_RULES["solana_wallet_low"]

    assert (depth.breached(50), depth.breached(51), depth.breached(None)) == (False, True, False)
    assert (wallet.breached(0.01), wallet.breached(0.0099)) == (False, True)


def test_overrides_change_only_the_fields_they_name() -> None:
    rules = parse_alert_rules(
        '{"money_queue_depth": {"threshold": 100, "channels": ["sms", "email", "sms"]},'
        ' "background_queue_depth": {"enabled": false, "severity": "info"}}'
    )

    assert rules["money_queue_depth"].threshold == 100
    assert rules["money_queue_depth"].channels == ("sms", "email")
    assert rules["money_queue_depth"].severity == "critical"
    assert not rules["background_queue_depth"].enabled
    assert rules["background_queue_depth"].cooldown_seconds == 86_400
    assert rules["money_failures"] == DEFAULT_RULES["money_failures"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '{"money_queue_depht": {}}',
            "unknown rule 'money_queue_depht'; did you mean 'money_queue_depth'?",
        ),
        (
            '{"money_failures": {"treshold": 3}}',
            "unknown field 'treshold'; did you mean 'threshold'?",
        ),
        (
            '{"money_failures": {"channels": ["sms", "cal"]}}',
            "unknown channel 'cal'; did you mean 'call'?",
        ),
        ('{"money_failures": {"severity": "page"}}', "severity is one of critical, warning, info"),
        ('{"money_failures": {"threshold": -1}}', "threshold must be a number >= 0"),
        (
            '{"money_queue_depth": {"window_seconds": 60}}',
            "window_seconds applies to failure rules",
        ),
        ("[1]", "must be a JSON object of rule names"),
        ("{", "is not JSON"),
    ],
)
def test_a_bad_override_is_a_start_up_error_saying_what_to_fix(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(queue_service_alert_rules=text)

    assert "QUEUE_SERVICE_ALERT_RULES" in str(caught.value)
    assert message in str(caught.value)


def test_alert_recipients_are_validated_at_start_up() -> None:
    with pytest.raises(ValidationError, match="ALERT_PHONE_NUMBERS is a comma-separated"):
        Settings(alert_phone_numbers="+14155550100, 415-555-0199")
    with pytest.raises(ValidationError, match="ALERT_EMAILS is a comma-separated"):
        Settings(alert_emails="oncall@example.com, not-an-address")

    ok = Settings(alert_phone_numbers=" +14155550100,+14155550199 ", alert_emails="a@b.example")
    assert ok.alert_recipients == (["+14155550100", "+14155550199"], ["a@b.example"])
