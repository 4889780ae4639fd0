"""Reachability probes of the configured providers for /health/ready: one cheap
request per vendor (never a charge, a send or a mint), under a short timeout,
all at once, the answers cached a few seconds so probes cannot hammer them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import orjson

from queue_service.observability.redaction import redact_text
from queue_service.providers.status import ProviderStatus, provider_statuses
from queue_service.settings import Settings

PROBE_TIMEOUT_SECONDS = 2.0
CACHE_SECONDS = 5.0

Probe = Callable[[Settings], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One provider's state: what serves the kind, and whether it answered."""

    status: ProviderStatus
    ok: bool
    required: bool
    detail: str = ""

    def describe(self) -> str:
        """``stripe: ok``, ``smtp: unreachable: ConnectError (optional)``,
        ``development: email outbox`` (stand-ins are not probed)."""
        if self.status.development:
            return self.status.describe()
        text = f"{self.status.name}: {'ok' if self.ok else self.detail}"
        return text if self.required or self.ok else f"{text} (optional)"

    @property
    def failing(self) -> bool:
        """Whether this makes the process not ready."""
        return self.required and not self.ok


async def _answers(url: str) -> None:
    """Any HTTP answer means reachable: the probe sends no credentials, so a
    401 or 404 from the API base is the expected reply."""
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_SECONDS, follow_redirects=False) as http:
        await http.get(url)


async def _stripe(settings: Settings) -> None:
    await _answers(settings.stripe_api_base.rstrip("/") + "/v1")


async def _twilio(settings: Settings) -> None:
    await _answers(settings.twilio_api_base.rstrip("/") + "/2010-04-01")


async def _minting(settings: Settings) -> None:
    assert settings.minting_service_url  # configured, or it would not be probed
    await _answers(settings.minting_service_url)


async def _analytics(settings: Settings) -> None:
    assert settings.analytics_service_url
    await _answers(settings.analytics_service_url)


async def _solana(settings: Settings) -> None:
    """getHealth: "ok", or a JSON-RPC error when the node is behind or down."""
    assert settings.solana_rpc_url
    body = {"jsonrpc": "2.0", "id": 1, "method": "getHealth"}
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_SECONDS, follow_redirects=False) as http:
        response = await http.post(
            settings.solana_rpc_url,
            content=orjson.dumps(body),
            headers={"content-type": "application/json"},
        )
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or answer.get("result") != "ok":
        error = answer.get("error") if isinstance(answer, dict) else None
        message = (
            error.get("message") if isinstance(error, dict) else f"HTTP {response.status_code}"
        )
        raise ConnectionError(f"node unhealthy: {str(message)[:120]}")


async def _smtp(settings: Settings) -> None:
    # The SMTP library loads only when an SMTP relay is configured and probed.
    from queue_service.providers.smtp import probe_smtp

    await probe_smtp(settings, PROBE_TIMEOUT_SECONDS)


PROBES: dict[str, Probe] = {
    "payments": _stripe,
    "wallet": _solana,
    "minting": _minting,
    "email": _smtp,
    "sms": _twilio,
    "analytics": _analytics,
}


async def _run(status: ProviderStatus, settings: Settings) -> ProbeResult:
    required = status.kind not in settings.ready_optional_providers
    if status.development:
        return ProbeResult(status, ok=True, required=required)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await PROBES[status.kind](settings)
    except TimeoutError:
        return ProbeResult(status, False, required, f"no answer within {PROBE_TIMEOUT_SECONDS:g} s")
    except Exception as exc:  # any failure is "unreachable", with its kind
        reason = redact_text(str(exc))[:120]
        detail = f"unreachable: {type(exc).__name__}" + (f": {reason}" if reason else "")
        return ProbeResult(status, False, required, detail)
    return ProbeResult(status, ok=True, required=required)


class ProviderHealth:
    """Probes every provider at most once per CACHE_SECONDS, however many
    readiness requests arrive: concurrent ones wait for the same round."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._lock = asyncio.Lock()
        self._results: list[ProbeResult] = []
        self._at = float("-inf")
        self.rounds = 0  # probe rounds run (tests and the docs' claim)

    async def check(self) -> list[ProbeResult]:
        if self._clock() - self._at < CACHE_SECONDS:
            return self._results
        async with self._lock:
            if self._clock() - self._at >= CACHE_SECONDS:
                statuses = provider_statuses(self.settings)
                self._results = list(
                    await asyncio.gather(*(_run(s, self.settings) for s in statuses))
                )
                self._at = self._clock()
                self.rounds += 1
        return self._results
