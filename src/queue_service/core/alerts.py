"""The alert rules of SPEC §8 as data: what each measures, its threshold,
severity, channels and cooldown, and the JSON overrides that configure them
(QUEUE_SERVICE_ALERT_RULES), validated with messages that say how to fix them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from queue_service.core.config_text import json_object, suggestion

Severity = Literal["critical", "warning", "info"]
Channel = Literal["log", "sms", "call", "email"]
# What a rule measures, from database truth (store/sql/alerts.sql):
#   queue_depth     jobs ready to run in ``queue`` (waiting, run_at due), every tenant
#   oldest_waiting  seconds the oldest ready job of ``queue`` has waited since its run_at
#   failures        attempts of ``queue``'s jobs that failed in the last ``window_seconds``
#   wallet_balance  the lowest observed minting-wallet balance (SOL); fires BELOW threshold
Measure = Literal["queue_depth", "oldest_waiting", "failures", "wallet_balance"]

SEVERITIES: tuple[str, ...] = get_args(Severity)
CHANNELS: tuple[str, ...] = get_args(Channel)
# SPEC §8: no firing repeats its notifications more often than this.
COOLDOWN_SECONDS: dict[str, int] = {"critical": 300, "warning": 3600, "info": 86_400}

SETTING = "QUEUE_SERVICE_ALERT_RULES"
_FIELDS = ("threshold", "severity", "channels", "enabled", "window_seconds")


@dataclass(frozen=True, slots=True)
class AlertRule:
    name: str
    title: str  # what a person reads first: "money queue depth"
    measure: Measure
    threshold: float
    severity: Severity
    channels: tuple[Channel, ...]
    queue: str | None = None
    window_seconds: int = 0  # failures only
    enabled: bool = True

    @property
    def cooldown_seconds(self) -> int:
        return COOLDOWN_SECONDS[self.severity]

    @property
    def fires_below(self) -> bool:
        """The wallet alert fires when the value falls under the threshold."""
        return self.measure == "wallet_balance"

    def breached(self, value: float | None) -> bool:
        """Whether ``value`` crosses the threshold (None: nothing to judge)."""
        if value is None:
            return False
        return value < self.threshold if self.fires_below else value > self.threshold


DEFAULT_RULES: dict[str, AlertRule] = {
    r.name: r
    for r in (
        AlertRule(
            "money_queue_depth",
            "money queue depth",
            "queue_depth",
            50,
            "critical",
            ("sms", "call"),
            queue="money",
        ),
        AlertRule(
            "money_oldest_waiting",
            "money oldest waiting job",
            "oldest_waiting",
            600,
            "critical",
            ("sms", "call"),
            queue="money",
        ),
        AlertRule(
            "money_failures",
            "money failures",
            "failures",
            10,
            "critical",
            ("sms", "call"),
            queue="money",
            window_seconds=900,
        ),
        AlertRule(
            "communication_queue_depth",
            "communication queue depth",
            "queue_depth",
            5000,
            "warning",
            ("sms",),
            queue="communication",
        ),
        AlertRule(
            "background_queue_depth",
            "background queue depth",
            "queue_depth",
            50_000,
            "warning",
            ("log",),
            queue="background",
        ),
        AlertRule(
            "solana_wallet_low",
            "Solana wallet balance",
            "wallet_balance",
            0.01,
            "warning",
            ("log", "sms"),
        ),
    )
}


def parse_alert_rules(text: str) -> dict[str, AlertRule]:
    """The default rules with the overrides of a JSON object such as
    ``{"money_queue_depth": {"threshold": 100, "channels": ["sms", "email"]}}``.
    Raises ValueError naming the setting, the rule and what to change."""
    rules = dict(DEFAULT_RULES)
    if not text.strip():
        return rules
    value = json_object(
        text,
        SETTING,
        'a JSON object of rule names, e.g. {"money_queue_depth": {"threshold": 100}}',
    )
    for name, fields in value.items():
        if name not in DEFAULT_RULES:
            hint = suggestion(name, DEFAULT_RULES, otherwise=f"rules: {', '.join(DEFAULT_RULES)}")
            raise ValueError(f"{SETTING}: unknown rule {name!r}{hint}")
        rules[name] = _override(DEFAULT_RULES[name], fields)
    return rules


def _override(rule: AlertRule, fields: Any) -> AlertRule:
    where = f"{SETTING}[{rule.name!r}]"
    if not isinstance(fields, dict):
        raise ValueError(f"{where} must be an object with some of {', '.join(_FIELDS)}")
    changes: dict[str, Any] = {}
    for key, value in fields.items():
        if key not in _FIELDS:
            hint = suggestion(key, _FIELDS, otherwise=f"fields: {', '.join(_FIELDS)}")
            raise ValueError(f"{where}: unknown field {key!r}{hint}")
        changes[key] = _field(where, rule, key, value)
    return replace(rule, **changes)


def _field(where: str, rule: AlertRule, key: str, value: Any) -> Any:
    if key == "threshold":
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{where}: threshold must be a number >= 0, not {value!r}")
        return float(value)
    if key == "severity":
        if value not in SEVERITIES:
            raise ValueError(f"{where}: severity is one of {', '.join(SEVERITIES)}, not {value!r}")
        return value
    if key == "channels":
        if not isinstance(value, list) or not value:
            raise ValueError(f"{where}: channels is a non-empty list of {', '.join(CHANNELS)}")
        for channel in value:
            if channel not in CHANNELS:
                hint = suggestion(str(channel), CHANNELS, otherwise=f"one of {', '.join(CHANNELS)}")
                raise ValueError(f"{where}: unknown channel {channel!r}{hint}")
        return tuple(dict.fromkeys(value))
    if key == "enabled":
        if not isinstance(value, bool):
            raise ValueError(f"{where}: enabled is true or false")
        return value
    # window_seconds
    if rule.measure != "failures":
        raise ValueError(f"{where}: window_seconds applies to failure rules only")
    if isinstance(value, bool) or not isinstance(value, int) or not 60 <= value <= 86_400:
        raise ValueError(f"{where}: window_seconds is a whole number from 60 to 86400")
    return value
