"""Webhook endpoints per tenant from the command line."""

from __future__ import annotations

import re
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from queue_service.cli.app import (
    err,
    out,
    run_on_runtime,
    webhooks_app,
)
from queue_service.runtime.service import (
    Runtime,
)

TenantOpt = Annotated[str, typer.Option("--tenant", help="The endpoint's tenant")]


def _webhook_secret(secret: str | None) -> str:
    """The given secret, checked, or a new one."""
    from queue_service.providers.webhooks import check_secret, new_secret

    if secret is None:
        return new_secret()
    try:
        return check_secret(secret)
    except ValueError as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None


def _changed_or_exit(changed: bool, tenant: str, name: str) -> None:
    if not changed:
        err.print(f"[red]error[/red]: tenant {tenant!r} has no webhook endpoint {name!r}")
        raise typer.Exit(1)


@webhooks_app.command("list")
def webhooks_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None,
) -> None:
    """Endpoints with their state (secrets and query strings are never shown)."""
    from queue_service.providers.webhooks import display_target

    async def go(rt: Runtime) -> list[Any]:
        return await rt.store.list_webhook_endpoints(tenant)

    table = Table(title="webhook endpoints")
    for col in ("tenant", "name", "url", "secrets", "state"):
        table.add_column(col)
    for e in run_on_runtime(go):
        state = (
            "enabled"
            if e.enabled
            else f"disabled {e.disabled_at:%Y-%m-%d %H:%M}: {e.disabled_reason}"
        )
        rotating = " (rotating)" if len(e.secrets) > 1 else ""
        secrets = f"{len(e.secrets)}{rotating}"
        table.add_row(e.tenant_id, e.name, display_target(e.url), secrets, state)
    out.print(table)


@webhooks_app.command("add")
def webhooks_add(
    name: Annotated[str, typer.Argument(help="Endpoint name (lower case, digits, . _ -)")],
    url: Annotated[str, typer.Argument(help="http:// or https:// URL of the receiver")],
    tenant: TenantOpt,
    secret: Annotated[
        str | None, typer.Option(help="A whsec_ secret to use (default: a new one, printed once)")
    ] = None,
) -> None:
    """Configure an endpoint; prints its signing secret once."""
    from queue_service.processors.webhooks import ENDPOINT_NAME

    if not re.fullmatch(ENDPOINT_NAME, name) or not re.match(r"https?://", url):
        err.print("[red]error[/red]: the name is 1-64 of a-z 0-9 . _ - and the URL http(s)://")
        raise typer.Exit(2)
    chosen = _webhook_secret(secret)

    async def go(rt: Runtime) -> bool:
        return await rt.store.add_webhook_endpoint(tenant, name, url, chosen)

    if not run_on_runtime(go):
        err.print(f"[red]error[/red]: tenant {tenant!r} already has an endpoint {name!r}")
        raise typer.Exit(1)
    out.print(f"added {name} for {tenant}")
    if secret is None:
        sys.stdout.write(f"signing secret (shown once): {chosen}\n")


@webhooks_app.command("remove")
def webhooks_remove(name: str, tenant: TenantOpt) -> None:
    """Remove an endpoint (its delivery history stays)."""

    async def go(rt: Runtime) -> bool:
        return await rt.store.remove_webhook_endpoint(tenant, name)

    _changed_or_exit(run_on_runtime(go), tenant, name)
    out.print(f"removed {name} of {tenant}")


@webhooks_app.command("enable")
def webhooks_enable(name: str, tenant: TenantOpt) -> None:
    """Re-enable an endpoint disabled by a 410 Gone."""

    async def go(rt: Runtime) -> bool:
        return await rt.store.enable_webhook_endpoint(tenant, name)

    _changed_or_exit(run_on_runtime(go), tenant, name)
    out.print(f"enabled {name} of {tenant}")


@webhooks_app.command("rotate")
def webhooks_rotate(
    name: str,
    tenant: TenantOpt,
    secret: Annotated[str | None, typer.Option(help="The new whsec_ secret (default: new)")] = None,
    finish: Annotated[
        bool, typer.Option(help="End the rotation: sign with the newest secret only")
    ] = False,
) -> None:
    """Add a second secret (deliveries carry both signatures), or --finish."""
    chosen = None if finish else _webhook_secret(secret)

    async def go(rt: Runtime) -> bool:
        if chosen is None:
            return await rt.store.finish_webhook_rotation(tenant, name)
        return await rt.store.rotate_webhook_secret(tenant, name, chosen)

    _changed_or_exit(run_on_runtime(go), tenant, name)
    if chosen is None:
        out.print(f"{name} of {tenant} now signs with its newest secret only")
        return
    out.print(f"{name} of {tenant} now signs with two secrets; --finish when the receiver switched")
    if secret is None:
        sys.stdout.write(f"new signing secret (shown once): {chosen}\n")
