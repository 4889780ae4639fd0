"""Alerts from the command line: what fired, and acknowledging a firing (the
on-call operator's way, whatever QUEUE_SERVICE_PLATFORM_OPERATOR_TENANTS says)."""

from __future__ import annotations

import getpass
from typing import Annotated, Literal
from uuid import UUID

import orjson
import typer
from rich.table import Table

from queue_service.cli.app import app, err, out, run_on_runtime
from queue_service.runtime.service import Runtime
from queue_service.store.alerts import AlertRecord

AlertStatus = Literal["firing", "acknowledged", "resolved"]
alerts_app = typer.Typer(
    help="Alerts: list what fired, acknowledge a firing.", no_args_is_help=True
)
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("list")
def alerts_list(
    status: Annotated[AlertStatus | None, typer.Option(help="Only these (default: all)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """Recent firings, newest first."""

    async def go(rt: Runtime) -> list[AlertRecord]:
        return await rt.store.list_alerts(limit, status=status)

    records = run_on_runtime(go)
    if as_json:
        for r in records:
            line = {
                "id": str(r.id),
                "rule": r.rule,
                "severity": r.severity,
                "status": r.status,
                "fired_at": r.fired_at.isoformat(),
                "message": r.message,
                "notifications": r.notifications,
            }
            out.print_json(orjson.dumps(line).decode())
        return
    table = Table(title="alerts")
    for column in ("id", "rule", "severity", "status", "fired", "notified", "message"):
        table.add_column(column)
    for r in records:
        table.add_row(
            str(r.id),
            r.rule,
            r.severity,
            r.status,
            f"{r.fired_at:%Y-%m-%d %H:%M:%S %Z}",
            str(r.notifications),
            r.message,
        )
    out.print(table)


@alerts_app.command("ack")
def alerts_ack(alert_id: UUID) -> None:
    """Acknowledge a firing: it stops repeating (it still resolves by itself)."""
    who = f"cli:{getpass.getuser()}"

    async def go(rt: Runtime) -> AlertRecord | None:
        return await rt.store.acknowledge_alert(alert_id, who)

    record = run_on_runtime(go)
    if record is None:
        err.print(f"[red]error[/red]: no alert {alert_id}")
        raise typer.Exit(1)
    out.print(f"{record.rule} ({record.severity}) acknowledged by {record.acknowledged_by}")
