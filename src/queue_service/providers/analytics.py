"""The analytics service (``ANALYTICS_SERVICE_URL``): track and batch calls
signed like SPEC §6 service auth, and the log-only development sink."""

from __future__ import annotations

from typing import Any, Protocol

import orjson
import structlog

from queue_service.providers.http_failures import failure_for_status
from queue_service.providers.internal import InternalClient, required_secret
from queue_service.providers.status import kind_status
from queue_service.settings import Settings

log = structlog.get_logger("queue_service.providers.analytics")

SERVICE = "analytics service"
TRACK_PATH = "/api/v1/events/track"
BATCH_PATH = "/api/v1/events/batch"
TIMEOUT_SECONDS = 5.0


class Analytics(Protocol):
    name: str

    async def track(self, tenant_id: str, event: dict[str, Any], key: str) -> None:
        """Send one event; ``key`` is the same on every retry (the service may dedupe)."""

    async def batch(self, tenant_id: str, events: list[dict[str, Any]], key: str) -> None:
        """Send events in one call."""

    async def aclose(self) -> None: ...


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
        error = failure_for_status(response, SERVICE)
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
