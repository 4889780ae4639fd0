"""Send one alert notification round through its channels (log, Twilio SMS,
Twilio voice call, email) to the configured recipients; each channel's
failure is recorded and never stops the others."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import structlog

from queue_service.core.alerts import AlertRule
from queue_service.observability.metrics import ALERTS_SENT
from queue_service.observability.redaction import redact_text
from queue_service.providers import Providers
from queue_service.providers.email import compose
from queue_service.settings import Settings

log = structlog.get_logger("queue_service.alerts")

# One slow provider must not hold the leader's other duties for long.
CHANNEL_TIMEOUT_SECONDS = 20.0
_MISSING = {
    "sms": "no recipients: set ALERT_PHONE_NUMBERS",
    "call": "no recipients: set ALERT_PHONE_NUMBERS",
    "email": "no recipients: set ALERT_EMAILS",
}


@dataclass(frozen=True, slots=True)
class Notice:
    """What one round says, PII-free (the message went through redaction)."""

    alert_id: UUID
    rule: AlertRule
    message: str
    fired_at: datetime
    value: float
    round: int

    @property
    def headline(self) -> str:
        return f"[{self.rule.severity.upper()}] {self.message}"


class AlertNotifier:
    """The channels of alerts, over the worker's provider adapters."""

    def __init__(self, settings: Settings, providers: Providers) -> None:
        self.settings = settings
        self.providers = providers
        self.phones, self.emails = settings.alert_recipients

    async def notify(self, notice: Notice) -> list[dict[str, Any]]:
        """Every channel of the rule at once; one outcome each:
        ``{"channel", "sent", "failed", "error"}`` (no recipient named)."""
        return list(await asyncio.gather(*(self._channel(c, notice) for c in notice.rule.channels)))

    async def _channel(self, channel: str, notice: Notice) -> dict[str, Any]:
        sends = self._sends(channel, notice)
        outcome: dict[str, Any] = {"channel": channel, "sent": 0, "failed": 0, "error": None}
        if not sends:
            outcome["error"] = _MISSING[channel]
            log.warning("alert channel has no recipients", alert=notice.rule.name, channel=channel)
            return outcome
        for send in sends:
            try:
                async with asyncio.timeout(CHANNEL_TIMEOUT_SECONDS):
                    await send()
            except Exception as exc:  # any provider failure: recorded, the others go on
                outcome["failed"] += 1
                outcome["error"] = outcome["error"] or _describe(exc)
                log.warning(
                    "alert channel failed",
                    alert=notice.rule.name,
                    channel=channel,
                    error=_describe(exc),
                )
            else:
                outcome["sent"] += 1
                ALERTS_SENT.labels(
                    alert=notice.rule.name, severity=notice.rule.severity, channel=channel
                ).inc()
        return outcome

    def _sends(self, channel: str, notice: Notice) -> list[Callable[[], Awaitable[object]]]:
        if channel == "log":
            return [lambda: self._log(notice)]
        if channel == "sms":
            return [_bind(self._sms, to, notice) for to in self.phones]
        if channel == "call":
            return [_bind(self._call, to, notice) for to in self.phones]
        return [_bind(self._email, to, notice) for to in self.emails]

    async def _log(self, notice: Notice) -> None:
        emit = {"critical": log.error, "warning": log.warning}.get(notice.rule.severity, log.info)
        emit(
            "ALERT",
            alert=notice.rule.name,
            severity=notice.rule.severity,
            message=notice.message,
            alert_id=str(notice.alert_id),
            round=notice.round,
        )

    async def _sms(self, to: str, notice: Notice) -> None:
        await self.providers.sms.send_sms(to, f"{notice.headline} (queue-service)")

    async def _call(self, to: str, notice: Notice) -> None:
        # Read aloud: the headline, twice, so a half-awake listener catches it.
        text = f"Queue service alert. {notice.headline}. I repeat: {notice.message}."
        await self.providers.sms.call(to, text)

    async def _email(self, to: str, notice: Notice) -> None:
        provider = self.providers.email
        context = {
            "alert": notice.rule.title,
            "severity": notice.rule.severity,
            "message": notice.message,
            "fired_at": notice.fired_at.isoformat(timespec="seconds"),
            "details": {
                "rule": notice.rule.name,
                "value": round(notice.value, 4),
                "threshold": notice.rule.threshold,
                "notification": notice.round,
            },
        }
        # One Message-ID per firing and round: a retried send is the same mail.
        key = f"alert:{notice.alert_id}:{notice.round}:{to}"
        await provider.send(compose("admin_alert", context, to=to, key=key, sender=provider.sender))


def _bind(
    send: Callable[[str, Notice], Awaitable[None]], to: str, notice: Notice
) -> Callable[[], Awaitable[None]]:
    return lambda: send(to, notice)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {CHANNEL_TIMEOUT_SECONDS:g} s"
    return redact_text(f"{type(exc).__name__}: {exc}")[:300]
