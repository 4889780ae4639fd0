"""Cron schedules from the command line: list, add (or change), remove;
the built-in cleanup and maintenance schedules are the _system tenant's."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from queue_service.cli.app import app, json_object_option, out, run_on_runtime
from queue_service.core.catalog import SYSTEM_TENANT
from queue_service.runtime.service import Runtime

schedules_app = typer.Typer(
    help="Cron schedules: list, add (or change with --replace), remove.", no_args_is_help=True
)
app.add_typer(schedules_app, name="schedules")


@schedules_app.command("list")
def schedules_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (default: all)")] = None,
) -> None:
    """Every schedule with its cron read aloud and its next tick."""
    from queue_service.runtime.schedules import explain

    async def go(rt: Runtime) -> list[Any]:
        found: list[Any] = []
        while True:
            after = (found[-1].created_at, found[-1].id) if found else None
            page = await rt.store.list_schedules(tenant, 500, after)
            found += page
            if len(page) < 500:
                return found

    table = Table(title="schedules")
    for col in ("tenant", "name", "id", "cron", "when", "type", "misfire", "next run (UTC)"):
        # Ids in full: `schedules remove` takes them.
        table.add_column(col, no_wrap=col == "id", min_width=36 if col == "id" else None)
    for s in run_on_runtime(go):
        table.add_row(
            s.tenant_id,
            s.name + ("" if s.active else " (inactive)"),
            str(s.id),
            s.cron,
            explain(s),
            s.type,
            s.misfire,
            f"{s.next_run_at:%Y-%m-%d %H:%M:%S}" if s.next_run_at else "never",
        )
    out.print(table)


@schedules_app.command("add")
def schedules_add(
    name: Annotated[str, typer.Argument(help="Unique per tenant: A-Z a-z 0-9 _ . : -")],
    cron: Annotated[str, typer.Option(help="5 fields: minute hour day-of-month month weekday")],
    job_type: Annotated[str, typer.Option("--type", help="The job type each tick enqueues")],
    data: Annotated[str, typer.Option(help="The job's data, a JSON object")] = "{}",
    timezone: Annotated[str, typer.Option(help="IANA time zone of the cron")] = "UTC",
    misfire: Annotated[
        Literal["run_once", "skip"], typer.Option(help="Ticks missed while no leader ran")
    ] = "run_once",
    tenant: Annotated[str, typer.Option(help="The schedule's tenant")] = SYSTEM_TENANT,
    inactive: Annotated[
        bool, typer.Option("--inactive", help="Store it without firing it")
    ] = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Change the schedule of that name in place (its history stays)"
        ),
    ] = False,
) -> None:
    """Add a schedule, checked like an enqueue; prints its next tick."""
    from queue_service.runtime.schedules import ScheduleManager, ScheduleRequest, explain

    request = ScheduleRequest(
        tenant_id=tenant,
        name=name,
        cron=cron,
        type=job_type,
        data=json_object_option(data),
        timezone=timezone,
        active=not inactive,
        misfire=misfire,
        created_by="cli",
    )

    async def go(rt: Runtime) -> Any:
        return await ScheduleManager(rt.manager).add(request, replace=replace)

    s = run_on_runtime(go)
    verb = "saved" if replace else "added"
    out.print(f"{verb} {s.name} ({s.id}) for {s.tenant_id}: {explain(s)}")
    out.print(f"next run: {s.next_run_at:%Y-%m-%d %H:%M:%S}Z" if s.active else "inactive")


@schedules_app.command("remove")
def schedules_remove(
    name_or_id: Annotated[str, typer.Argument(help="The schedule's name or id")],
    tenant: Annotated[str | None, typer.Option(help="The schedule's tenant")] = None,
) -> None:
    """Remove a schedule (the jobs it enqueued stay)."""
    from queue_service.runtime.schedules import ScheduleManager

    async def go(rt: Runtime) -> Any:
        return await ScheduleManager(rt.manager).remove(tenant, name_or_id)

    s = run_on_runtime(go)
    out.print(f"removed {s.name} ({s.id}) of {s.tenant_id}")
