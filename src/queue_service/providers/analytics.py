"""The analytics service (``ANALYTICS_SERVICE_URL``): track and batch calls
signed like SPEC §6 service auth, and the log-only development sink."""

from __future__ import annotations

from typing import Any, Protocol

import httpx
import orjson
import structlog

from queue_service.errors import JobError, PermanentError, RetryableError, Snooze
from queue_service.providers.http_failures import retry_after_seconds
from queue_service.providers.internal import InternalClient, required_secret
from queue_service.providers.status import kind_status
from queue_service.settings import Settings

log = structlog.get_logger("queue_service.providers.analytics")

SERVICE = "analytics service"
TRACK_PATH = "/api/v1/events/track"
BATCH_PATH = "/api/v1/events/batch"
TIMEOUT_SECONDS = 5.0
# A 429 without Retry-After: wait a little, without using an attempt.
DEFAULT_SNOOZE_SECONDS = 5.0
# A 429's Retry-After is honoured within 1 s .. 1 h.
RETRY_AFTER_BOUNDS = (1.0, 3600.0)
_REASONS = {401: "authentication", 403: "forbidden", 404: "not_found", 422: "validation"}


class Analytics(Protocol):
    name: str

    async def track(self, tenant_id: str, event: dict[str, Any], key: str) -> None:
        """Send one event; ``key`` is the same on every retry (the service may dedupe)."""

    async def batch(self, tenant_id: str, events: list[dict[str, Any]], key: str) -> None:
        """Send events in one call."""

    async def aclose(self) -> None: ...


def failure(response: httpx.Response) -> JobError | None:
    """None for 2xx; a 429 snoozes, 4xx is permanent, anything else retries."""
    code = response.status_code
    if 200 <= code < 300:
        return None
    if code == 429:
        delay = retry_after_seconds(response.headers, bounds=RETRY_AFTER_BOUNDS)
        return Snooze(delay or DEFAULT_SNOOZE_SECONDS, f"{SERVICE} answered 429")
    if 400 <= code < 500:
        reason = _REASONS.get(code, "invalid_request")
        return PermanentError(f"{SERVICE} refused the call: HTTP {code} ({reason})", reason=reason)
    return RetryableError(f"{SERVICE} answered HTTP {code}")


class AnalyticsService:
    name = "analytics-service"

    def __init__(self, base_url: str, service_name: str, secret: str) -> None:
        self._http = InternalClient(
            base_url, service_name, secret, service=SERVICE, timeout=TIMEOUT_SECONDS
        )

    async def track(self, tenant_id: str, event: dict[str, Any], key: str) -> None:
        await self._post(TRACK_PATH, tenant_id, event, key)

    async def batch(self, tenant_id: str, events: list[dict[str, Any]], key: str) -> None:
        await self._post(BATCH_PATH, tenant_id, {"events": events}, key)

    async def _post(self, path: str, tenant_id: str, payload: dict[str, Any], key: str) -> None:
        response = await self._http.send(
            "POST", path, tenant_id, body=orjson.dumps(payload), idempotency_key=key
        )
        error = failure(response)
        if error is not None:
            raise error

    async def aclose(self) -> None:
        await self._http.aclose()


class AnalyticsLog:
    """Development stand-in when ANALYTICS_SERVICE_URL is unset: logs the
    event names, sends nothing."""

    name = "analytics log (development)"

    async def track(self, tenant_id: str, event: dict[str, Any], key: str) -> None:
        log.info(
            "development analytics sink: not sent",
            provider=self.name,
            tenant_id=tenant_id,
            event_name=event.get("event"),
        )

    async def batch(self, tenant_id: str, events: list[dict[str, Any]], key: str) -> None:
        log.info(
            "development analytics sink: batch not sent",
            provider=self.name,
            tenant_id=tenant_id,
            events=len(events),
        )

    async def aclose(self) -> None:
        return None


def build(settings: Settings) -> Analytics:
    """The analytics service when ANALYTICS_SERVICE_URL is set, else the log sink."""
    if kind_status(settings, "analytics").development:
        log.warning("analytics: ANALYTICS_SERVICE_URL is unset, using the log-only sink")
        return AnalyticsLog()
    assert settings.analytics_service_url  # what selected the service
    secret = required_secret(settings, "ANALYTICS_SERVICE_URL")
    return AnalyticsService(settings.analytics_service_url, settings.internal_service_name, secret)
