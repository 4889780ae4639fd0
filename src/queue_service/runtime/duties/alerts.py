"""Evaluate the alert rules from database truth: open or refresh a firing
while a rule's condition holds, notify once per cooldown until acknowledged,
and record the resolution when the condition clears."""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from queue_service.core.alerts import AlertRule
from queue_service.observability.redaction import redact_text
from queue_service.providers import Providers
from queue_service.runtime.alerting import AlertNotifier, Notice
from queue_service.settings import Settings
from queue_service.store import Store

log = structlog.get_logger("queue_service.alerts")


class AlertDuty:
    """The leader's alert evaluator. It keeps nothing between rounds: the
    open firing and its last notification are rows of alert_history, so a
    restarted process or a new leader carries on where the last one stopped."""

    name = "alerts"

    def __init__(
        self,
        store: Store,
        settings: Settings,
        providers: Providers,
        rules: Iterable[AlertRule] | None = None,
    ) -> None:
        self.store = store
        self.every_seconds = settings.queue_service_alert_interval_seconds
        chosen = settings.alert_rules.values() if rules is None else rules
        self.rules = [r for r in chosen if r.enabled]
        self.notifier = AlertNotifier(settings, providers)

    async def run(self) -> None:
        values = await self.measure()
        for rule in self.rules:
            value, detail = values[rule.name]
            if rule.breached(value):
                assert value is not None
                await self._firing(rule, value, detail)
            else:
                await self._clear(rule, value)

    async def measure(self) -> dict[str, tuple[float | None, str]]:
        """Each rule's observed value (None: nothing to judge) and a
        PII-free description of it."""
        queues = sorted({r.queue for r in self.rules if r.queue and r.measure != "failures"})
        by_queue = await self.store.alert_queue_measures(queues) if queues else {}
        wallets = (
            await self.store.wallet_balances()
            if any(r.measure == "wallet_balance" for r in self.rules)
            else []
        )
        found: dict[str, tuple[float | None, str]] = {}
        for rule in self.rules:
            if rule.measure == "queue_depth":
                depth = by_queue[str(rule.queue)].depth
                found[rule.name] = (float(depth), f"{depth:,} jobs ready to run")
            elif rule.measure == "oldest_waiting":
                age = by_queue[str(rule.queue)].oldest_seconds
                found[rule.name] = (age, f"oldest ready job waiting {_duration(age or 0)}")
            elif rule.measure == "failures":
                count = await self.store.alert_failure_count(str(rule.queue), rule.window_seconds)
                found[rule.name] = (
                    float(count),
                    f"{count:,} failed attempts in the last {_duration(rule.window_seconds)}",
                )
            else:
                low = min(wallets, key=lambda w: w.balance_sol, default=None)
                if low is None:
                    found[rule.name] = (None, "no wallet balance observed yet")
                else:
                    held = f"wallet {_short(low.address)} holds {low.balance_sol:f} SOL"
                    found[rule.name] = (float(low.balance_sol), held)
        return found

    async def _firing(self, rule: AlertRule, value: float, detail: str) -> None:
        message = redact_text(f"{rule.title}: {detail} ({_threshold(rule)})")
        firing = await self.store.alert_observe(
            rule=rule.name,
            fire_key=rule.name,
            severity=rule.severity,
            value=value,
            threshold=rule.threshold,
            message=message,
        )
        if firing.opened:
            log.warning("alert firing", alert=rule.name, severity=rule.severity, message=message)
        if firing.acknowledged_at is not None:
            return  # acknowledged: this firing repeats nothing more
        round_ = await self.store.alert_claim_notification(firing.id, rule.cooldown_seconds)
        if round_ is None:
            return  # within the cooldown (this firing's or the last one's)
        outcomes = await self.notifier.notify(
            Notice(firing.id, rule, message, firing.fired_at, value, round_)
        )
        await self.store.alert_record_channels(firing.id, outcomes)
        log.info(
            "alert notified",
            alert=rule.name,
            round=round_,
            sent={o["channel"]: o["sent"] for o in outcomes},
            failed=[o["channel"] for o in outcomes if o["failed"] or o["error"]],
        )

    async def _clear(self, rule: AlertRule, value: float | None) -> None:
        resolved = await self.store.alert_resolve(rule.name)
        if resolved is not None:
            log.info("alert resolved", alert=rule.name, alert_id=str(resolved), value=value)


def _threshold(rule: AlertRule) -> str:
    if rule.measure == "oldest_waiting":
        return f"alert above {_duration(rule.threshold)}"
    if rule.measure == "wallet_balance":
        return f"alert below {rule.threshold:g} SOL"
    return f"alert above {rule.threshold:,.0f}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min".replace(".0 min", " min")
    return f"{seconds / 3600:.1f} h".replace(".0 h", " h")


def _short(address: str) -> str:
    """A wallet identifier truncated as the logs truncate it."""
    return f"{address[:4]}…{address[-4:]}" if len(address) > 12 else "[redacted]"
