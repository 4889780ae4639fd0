"""Outbound rate limits from the command line: status, emergency stop, reset."""

from __future__ import annotations

import dataclasses
import getpass
from datetime import UTC
from typing import Annotated

import orjson
import typer
from rich.table import Table

from queue_service.cli.app import (
    out,
    rate_limits_app,
    run_on_runtime,
)
from queue_service.errors import QueueServiceError
from queue_service.runtime.outbound import read_states
from queue_service.runtime.service import (
    Runtime,
)
from queue_service.store.outbound import OutboundState


def _outbound_service(rt: Runtime, service: str) -> None:
    if service not in rt.settings.outbound_limits:
        known = ", ".join(sorted(rt.settings.outbound_limits))
        raise QueueServiceError(f"no outbound service {service!r}; services are {known}")


@rate_limits_app.command("status")
def rate_limits_status(
    service: Annotated[str | None, typer.Argument(help="One service (default: all)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Outbound buckets, emergency stops and circuit breakers, shared by every worker."""

    async def go(rt: Runtime) -> list[OutboundState]:
        if service is not None:
            _outbound_service(rt, service)
        settings = rt.settings
        return await read_states(
            rt.store, settings.outbound_limits, settings.breaker_policy, service
        )

    states = run_on_runtime(go)
    if as_json:
        out.print_json(orjson.dumps([dataclasses.asdict(s) for s in states]).decode())
        return
    table = Table(title="outbound rate limits")
    columns = ("service", "tokens", "reserved", "refill/s", "in flight", "stopped", "breaker")
    for col in (*columns, "failures"):
        table.add_column(col, justify="right" if col in ("tokens", "refill/s") else "left")
    for s in states:
        breaker: str = s.breaker_state
        if breaker == "open" and s.half_open_at is not None:
            breaker += f" until {s.half_open_at.astimezone(UTC):%H:%M:%S}"
        table.add_row(
            s.service,
            f"{s.tokens:.1f} / {s.size:g}",
            f"{s.reserved}" if s.reserved else "-",
            f"{s.refill_per_second:g}",
            f"{s.in_flight} / {s.max_in_flight}",
            f"[red]STOPPED[/red] by {s.stopped_by}: {s.stop_reason or '-'}"
            if s.stopped_at
            else "-",
            breaker,
            f"{s.consecutive_failures} / {s.breaker_failures}",
        )
    out.print(table)


@rate_limits_app.command("stop")
def rate_limits_stop(
    service: Annotated[str, typer.Argument(help="The outbound service to stop")],
    reason: Annotated[
        str | None, typer.Option(help="Why (shown in status and job history)")
    ] = None,
) -> None:
    """Emergency stop: every job calling SERVICE snoozes until `rate-limits reset`."""

    async def go(rt: Runtime) -> None:
        _outbound_service(rt, service)
        await rt.store.outbound_configure(
            service, rt.settings.outbound_limits[service], rt.settings.breaker_policy
        )
        await rt.store.outbound_stop(service, f"cli ({getpass.getuser()})", reason)

    run_on_runtime(go)
    out.print(f"stopped {service}: calls snooze until `queue-service rate-limits reset {service}`")


@rate_limits_app.command("reset")
def rate_limits_reset(
    service: Annotated[str, typer.Argument(help="The outbound service to reset")],
) -> None:
    """Refill SERVICE's bucket, end its emergency stop and close its breaker."""

    async def go(rt: Runtime) -> None:
        _outbound_service(rt, service)
        await rt.store.outbound_configure(
            service, rt.settings.outbound_limits[service], rt.settings.breaker_policy
        )
        await rt.store.outbound_reset(service)

    run_on_runtime(go)
    out.print(f"reset {service}: bucket full, not stopped, breaker closed")
