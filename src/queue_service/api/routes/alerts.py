"""/alerts: the platform's alert firings (any authenticated user: they carry
no tenant data and no PII) and their acknowledgement (an admin of a
platform-operator tenant: an alert is every tenant's, decision 0013)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel

from queue_service.api.cursors import decode_cursor, encode_cursor
from queue_service.api.problems import ERROR_RESPONSES, Problem
from queue_service.api.security import Admin, AnyRole, State
from queue_service.observability.redaction import redact_text
from queue_service.store import Store
from queue_service.store.alerts import AlertRecord

router = APIRouter(tags=["alerts"], responses=ERROR_RESPONSES)

AlertStatus = Literal["firing", "acknowledged", "resolved"]
SeverityName = Literal["critical", "warning", "info"]


class ChannelOutcome(BaseModel):
    channel: str
    sent: int
    failed: int
    error: str | None


class AlertOut(BaseModel):
    id: UUID
    rule: str
    severity: SeverityName
    status: AlertStatus
    message: str
    value: float
    threshold: float
    fired_at: datetime
    observed_at: datetime
    notifications: int
    last_notified_at: datetime | None
    channels: list[ChannelOutcome]
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None


class AlertList(BaseModel):
    items: list[AlertOut]
    next_cursor: str | None


def _out(record: AlertRecord) -> AlertOut:
    return AlertOut.model_validate(
        {
            **{f: getattr(record, f) for f in AlertOut.model_fields if f != "status"},
            "status": record.status,
        }
    )


@router.get("/alerts", response_model=AlertList, summary="Alert firings, newest first")
async def list_alerts(
    caller: AnyRole,
    state: State,
    status: Annotated[AlertStatus | None, Query()] = None,
    severity: Annotated[SeverityName | None, Query()] = None,
    rule: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AlertList:
    records = await Store(state.db).list_alerts(
        limit + 1,
        status=status,
        severity=severity,
        rule=rule,
        before=decode_cursor(cursor) if cursor else None,
    )
    page = records[:limit]
    return AlertList(
        items=[_out(r) for r in page],
        next_cursor=encode_cursor(page[-1].fired_at, page[-1].id) if len(records) > limit else None,
    )


@router.post(
    "/alerts/{alert_id}/acknowledge",
    response_model=AlertOut,
    summary="Acknowledge a firing: its notifications stop repeating (idempotent)",
)
async def acknowledge(alert_id: UUID, caller: Admin, state: State) -> AlertOut:
    if caller.tenant_id not in state.settings.platform_operator_tenants:
        raise Problem(
            403,
            "alerts are the platform's, shared by every tenant: acknowledge them as an"
            " admin of a tenant listed in QUEUE_SERVICE_PLATFORM_OPERATOR_TENANTS",
        )
    # The subject may be an email address; every tenant's users read this.
    who = redact_text(f"{caller.subject} (tenant {caller.tenant_id})")
    record = await Store(state.db).acknowledge_alert(alert_id, who)
    if record is None:
        raise Problem(404, f"no alert {alert_id}")
    return _out(record)
