"""The ``queue-service`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC
from typing import Annotated, Any, TypeVar
from uuid import UUID

import orjson
import structlog
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from queue_service.api.app import create_app
from queue_service.api.server import serve_http
from queue_service.api.state import ConfigurationError, build_api_state
from queue_service.errors import QueueServiceError
from queue_service.providers.status import production_refusal, provider_statuses
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.outbound import read_states
from queue_service.runtime.service import (
    Runtime,
    freeze_startup_heap,
    install_signal_handlers,
    loop_factory,
    open_runtime,
    run_until_stopped,
)
from queue_service.settings import Settings, load_settings
from queue_service.store.migrate import apply_migrations
from queue_service.store.outbound import OutboundState

app = typer.Typer(
    help="queue-service: a durable PostgreSQL job queue.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
dlq_app = typer.Typer(help="Dead-letter queue: list, replay, delete.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
rate_limits_app = typer.Typer(
    help="Outbound rate limits: status, emergency stop, reset.", no_args_is_help=True
)
app.add_typer(rate_limits_app, name="rate-limits")
webhooks_app = typer.Typer(
    help="Webhook endpoints per tenant: list, add, remove, enable, rotate.", no_args_is_help=True
)
app.add_typer(webhooks_app, name="webhooks")
# Piped output (CI logs, files) gets room for the whole table, not 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)
T = TypeVar("T")
log = structlog.get_logger("queue_service.cli")


def _settings() -> Settings:
    try:
        return load_settings()
    except ValidationError as exc:
        for e in exc.errors(include_url=False):
            name = ".".join(str(p) for p in e["loc"]).upper()
            err.print(f"[red]configuration error[/red]: {name}: {e['msg']}")
        raise typer.Exit(2) from None


@contextlib.contextmanager
def _database(settings: Settings, *, migrate: bool | None = None) -> Iterator[str]:
    from queue_service.store.embedded import database_conninfo

    with database_conninfo(settings) as conninfo:
        if migrate if migrate is not None else settings.queue_service_auto_migrate:
            applied = apply_migrations(conninfo)
            if applied:
                err.print(f"applied migrations: {', '.join(applied)}")
        yield conninfo


def _configure_logging(settings: Settings, *, quiet: bool = False) -> None:
    from queue_service.observability.logging import configure_logging

    level = "warning" if quiet else settings.queue_service_log_level
    configure_logging(level, json=not sys.stderr.isatty(), stream=sys.stderr)


def _run(fn: Callable[[Runtime], Awaitable[T]], *, quiet: bool = True) -> T:
    """Open the database and run ``fn``; errors become one clear line."""
    settings = _settings()
    _configure_logging(settings, quiet=quiet)

    async def main(conninfo: str) -> T:
        async with open_runtime(settings, conninfo, pool_size=4) as runtime:
            return await fn(runtime)

    try:
        with _database(settings) as conninfo:
            return asyncio.run(main(conninfo))
    except QueueServiceError as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None


def _serve(queues: list[str] | None, *, leader: bool, workers: bool, http: bool) -> None:
    settings = _settings()
    _configure_logging(settings)
    if workers:
        _check_providers(settings)

    async def main(conninfo: str) -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        async with open_runtime(settings, conninfo) as runtime:
            for name in queues or []:
                runtime.registry.queue(name)
            tasks = []
            state = None
            if http:
                state = build_api_state(settings, runtime)
                await state.open()
                tasks.append(
                    asyncio.create_task(
                        serve_http(
                            create_app(state),
                            settings.queue_service_host,
                            settings.queue_service_port,
                            stop,
                        )
                    )
                )
            if workers:
                tasks.append(
                    asyncio.create_task(
                        run_until_stopped(runtime, stop, queues=queues, leader=leader)
                    )
                )
            if state is not None:
                state.started = True
            freeze_startup_heap()
            try:
                await _first_failure(tasks, stop)
            finally:
                if state is not None:
                    await state.close()

    try:
        with (
            _database(settings) as conninfo,
            asyncio.Runner(loop_factory=loop_factory(settings)) as r,
        ):
            r.run(main(conninfo))
    except (QueueServiceError, ConfigurationError) as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None


def _check_providers(settings: Settings) -> None:
    """A process that runs jobs says what serves each kind of outside work, and
    in production refuses to run any on a development stand-in."""
    refusal = production_refusal(settings)
    if refusal is not None:
        err.print(f"[red]error[/red]: {refusal}", soft_wrap=True)
        raise typer.Exit(2)
    for p in provider_statuses(settings):
        if p.development:
            log.warning(
                "development provider in use: not for production",
                kind=p.kind,
                provider=p.name,
                configure=p.configure,
            )
        else:
            log.info("provider configured", kind=p.kind, provider=p.name)


async def _first_failure(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    """Run until every task ends; one failing stops the others (drained)."""
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.exception() is not None:
                stop.set()
                await asyncio.gather(*pending, return_exceptions=True)
                raise task.exception()  # type: ignore[misc]


@app.command()
def serve() -> None:
    """Run the HTTP API, workers for every queue and the leader duties (the default)."""
    _serve(None, leader=True, workers=True, http=True)


@app.command()
def api() -> None:
    """Run the HTTP API only."""
    _serve(None, leader=False, workers=False, http=True)


@app.command()
def worker(
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues (default: all)")
    ] = None,
) -> None:
    """Run workers only (no leader duties, no HTTP API)."""
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    _serve(names, leader=False, workers=True, http=False)


@app.command()
def token(
    sub: Annotated[str, typer.Option(help="Subject (user id)")],
    tenant: Annotated[str, typer.Option(help="Tenant id")],
    role: Annotated[list[str], typer.Option(help="admin, venue_admin or user (repeatable)")],
    ttl: Annotated[int, typer.Option(min=60, max=86_400 * 30, help="Seconds")] = 3600,
) -> None:
    """Print a development token signed with this server's HS256 key."""
    from queue_service.api.auth.tokens import mint_token
    from queue_service.api.state import dev_secret

    settings = _settings()
    if settings.jwt_secret is not None:
        secret = settings.jwt_secret.get_secret_value()
    elif settings.is_development:
        secret = dev_secret(settings.data_dir)
    else:
        err.print(
            "[red]error[/red]: `token` is for development: set QUEUE_SERVICE_ENV="
            "development, or JWT_SECRET to sign with the configured key"
        )
        raise typer.Exit(2)
    try:
        sys.stdout.write(
            mint_token(
                secret,
                subject=sub,
                tenant_id=tenant,
                roles=role,  # type: ignore[arg-type]
                ttl_seconds=ttl,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
            )
            + "\n"
        )
    except ValueError as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None


@app.command()
def migrate() -> None:
    """Apply pending schema migrations and exit."""
    settings = _settings()
    with _database(settings, migrate=False) as conninfo:
        applied = apply_migrations(conninfo)
    out.print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


@app.command()
def enqueue(
    job_type: Annotated[str, typer.Argument(help="Job type, e.g. email.send")],
    data: Annotated[str, typer.Option(help="Payload as JSON")] = "{}",
    tenant: Annotated[str, typer.Option(help="Tenant id")] = ...,  # type: ignore[assignment]
    priority: Annotated[int | None, typer.Option(help="1 (first) .. 10")] = None,
    delay_ms: Annotated[int | None, typer.Option(help="Run after this many ms")] = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Enqueue one job and print it as JSON."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        err.print(f"[red]error[/red]: --data is not valid JSON: {exc}")
        raise typer.Exit(2) from None
    if not isinstance(payload, dict):
        err.print("[red]error[/red]: --data must be a JSON object")
        raise typer.Exit(2)

    async def go(rt: Runtime) -> dict[str, Any]:
        done = await rt.manager.enqueue(
            EnqueueRequest(
                type=job_type,
                data=payload,
                tenant_id=tenant,
                priority=priority,
                delay_ms=delay_ms,
                idempotency_key=idempotency_key,
                created_by="cli",
            )
        )
        job = await rt.manager.get(done.job_id)
        return {"created": done.created, "job": job.to_dict()}

    out.print_json(orjson.dumps(_run(go)).decode())


@app.command()
def status(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Queues with their true counts, pauses and live workers."""

    async def go(rt: Runtime) -> dict[str, Any]:
        counts = await rt.store.queue_counts(tenant)
        pauses = await rt.store.paused_queues()
        workers = await rt.store.list_workers()
        names = sorted({q.name for q in rt.registry.queues} | set(counts))
        return {
            "queues": [
                {
                    "name": n,
                    "paused_for": [t for q, t, _, _ in pauses if q == n],
                    "counts": counts[n].counts()
                    if n in counts
                    else dict.fromkeys(
                        ("waiting", "delayed", "active", "completed", "failed", "cancelled"), 0
                    ),
                    "oldest_waiting_age_seconds": counts[n].oldest_waiting_age_seconds
                    if n in counts
                    else None,
                }
                for n in names
            ],
            "workers": [
                {"id": w.id, "queues": w.queues, "heartbeat_at": w.heartbeat_at.isoformat()}
                for w in workers
            ],
        }

    report = _run(go)
    if as_json:
        out.print_json(orjson.dumps(report).decode())
        return
    table = Table(title="queues")
    for col in (
        "queue",
        "paused",
        "waiting",
        "delayed",
        "active",
        "completed",
        "failed",
        "cancelled",
        "oldest waiting",
    ):
        table.add_column(col, justify="left" if col in ("queue", "paused") else "right")
    for q in report["queues"]:
        c = q["counts"]
        age = q["oldest_waiting_age_seconds"]
        table.add_row(
            q["name"],
            ",".join(q["paused_for"]) or "-",
            *(
                str(c[k])
                for k in ("waiting", "delayed", "active", "completed", "failed", "cancelled")
            ),
            f"{age:.1f} s" if age is not None else "-",
        )
    out.print(table)
    out.print(
        f"{len(report['workers'])} live worker(s): "
        + (", ".join(w["id"] for w in report["workers"]) or "none")
    )


@app.command()
def pause(
    queue: Annotated[str, typer.Argument(help="Queue to pause")],
    tenant: Annotated[str, typer.Option(help="One tenant, or * for every tenant")] = "*",
) -> None:
    """Stop new pick-ups of a queue on every worker (running jobs finish)."""

    async def go(rt: Runtime) -> None:
        rt.registry.queue(queue)
        await rt.store.pause_queue(queue, tenant, "cli")

    _run(go)
    out.print(f"paused {queue} for {'every tenant' if tenant == '*' else tenant}")


@app.command()
def resume(
    queue: Annotated[str, typer.Argument(help="Queue to resume")],
    tenant: Annotated[str, typer.Option(help="One tenant, or * for every tenant")] = "*",
) -> None:
    """Lift a pause set with `pause` (or a tenant's, with --tenant)."""

    async def go(rt: Runtime) -> bool:
        rt.registry.queue(queue)
        return await rt.store.resume_queue(queue, tenant)

    lifted = _run(go)
    out.print(f"resumed {queue}" if lifted else f"{queue} was not paused for {tenant}")


@dlq_app.command("list")
def dlq_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    job_type: Annotated[str | None, typer.Option("--type")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """List dead letters, newest first."""

    async def go(rt: Runtime) -> list[Any]:
        return await rt.store.list_dead_letters(tenant, limit, queue=queue, job_type=job_type)

    table = Table(title="dead letters")
    for col in ("id", "tenant", "type", "attempts", "failed at", "replayed as", "error"):
        table.add_column(col)
    for d in _run(go):
        table.add_row(
            str(d.id),
            d.tenant_id,
            d.type,
            str(d.attempts),
            d.failed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            str(d.replayed_job_id or "-"),
            (d.error or "")[:80],
        )
    out.print(table)


@dlq_app.command("replay")
def dlq_replay(dlq_id: UUID) -> None:
    """Replay a dead letter as a new job (once)."""

    async def go(rt: Runtime) -> UUID:
        return await rt.manager.replay_dead_letter(dlq_id, None, "cli")

    out.print(f"replayed as job {_run(go)}")


@dlq_app.command("delete")
def dlq_delete(dlq_id: UUID) -> None:
    """Delete a dead letter."""

    async def go(rt: Runtime) -> bool:
        return await rt.store.delete_dead_letter(dlq_id)

    if not _run(go):
        err.print(f"[red]error[/red]: no dead letter {dlq_id}")
        raise typer.Exit(1)
    out.print(f"deleted {dlq_id}")


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

    states = _run(go)
    if as_json:
        out.print_json(orjson.dumps([dataclasses.asdict(s) for s in states]).decode())
        return
    table = Table(title="outbound rate limits")
    for col in ("service", "tokens", "refill/s", "in flight", "stopped", "breaker", "failures"):
        table.add_column(col, justify="right" if col in ("tokens", "refill/s") else "left")
    for s in states:
        breaker: str = s.breaker_state
        if breaker == "open" and s.half_open_at is not None:
            breaker += f" until {s.half_open_at.astimezone(UTC):%H:%M:%S}"
        table.add_row(
            s.service,
            f"{s.tokens:.1f} / {s.size:g}",
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

    _run(go)
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

    _run(go)
    out.print(f"reset {service}: bucket full, not stopped, breaker closed")


@app.command()
def demo(
    url: Annotated[
        str | None,
        typer.Option(
            help="A running service to drive (default: start one on a fresh embedded"
            " database with development providers)"
        ),
    ] = None,
    orders: Annotated[int, typer.Option(min=1, max=500, help="Orders to place")] = 12,
    timeout: Annotated[float, typer.Option(min=10, help="Give up after this many seconds")] = 180,
) -> None:
    """Run a realistic order flow (payments, fulfilment, mints, emails, webhooks,
    analytics, refunds) through the HTTP API, with a live progress display."""
    from queue_service.demo import DemoError, run_demo

    settings = _settings()
    try:
        run_demo(settings, url, orders, timeout, out)
    except DemoError as exc:
        err.print(f"[red]error[/red]: {exc}", soft_wrap=True)
        raise typer.Exit(1) from None


@app.command()
def bench(
    workload: Annotated[
        str,
        typer.Option(
            help="enqueue-single | enqueue-batch | drain | latency | http-enqueue | payments"
            " (payments: 3 worker processes against a local Stripe; try --jobs 300)"
        ),
    ] = "drain",
    jobs: Annotated[int, typer.Option(min=1, help="Jobs to enqueue or drain")] = 20_000,
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="Batch size")] = 1000,
    concurrency: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    prefetch: Annotated[
        int | None, typer.Option(min=0, help="Claimed-ahead jobs (default: 9 x concurrency)")
    ] = None,
    rate: Annotated[float, typer.Option(min=1, help="latency: jobs per second")] = 200.0,
    duration: Annotated[float, typer.Option(min=1, help="latency: seconds")] = 10.0,
    database_url: Annotated[
        str | None, typer.Option(help="Server to use (a scratch database is created there)")
    ] = None,
    baseline: Annotated[
        bool, typer.Option(help="Also run the plain-SQL baseline loop, the same minute")
    ] = False,
    keep: Annotated[bool, typer.Option(help="Keep the scratch databases")] = False,
    sync: Annotated[
        bool, typer.Option(help="enqueue-*: use the synchronous producer (SyncProducer) instead")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Measure throughput or latency on the no-op job type."""
    from queue_service.bench import WORKLOADS, BenchOptions, run_bench

    if workload not in WORKLOADS:
        err.print(f"[red]error[/red]: unknown workload {workload!r}")
        raise typer.Exit(2)
    opts = BenchOptions(
        workload=workload,
        jobs=jobs,
        batch=batch,
        concurrency=concurrency,
        prefetch=prefetch,
        rate=rate,
        duration=duration,
        baseline=baseline,
        keep=keep,
        sync=sync,
    )
    settings = _settings()
    _configure_logging(settings, quiet=True)
    with contextlib.ExitStack() as stack:
        admin = database_url or stack.enter_context(_database(settings, migrate=False))
        report = run_bench(settings, admin, opts, progress=lambda m: err.print(f"[dim]{m}[/dim]"))
    if as_json:
        sys.stdout.write(orjson.dumps(report).decode() + "\n")
        return
    table = Table(title=f"bench: {workload}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in report.items():
        table.add_row(key, str(value))
    out.print(table)


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
    for e in _run(go):
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

    if not _run(go):
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

    _changed_or_exit(_run(go), tenant, name)
    out.print(f"removed {name} of {tenant}")


@webhooks_app.command("enable")
def webhooks_enable(name: str, tenant: TenantOpt) -> None:
    """Re-enable an endpoint disabled by a 410 Gone."""

    async def go(rt: Runtime) -> bool:
        return await rt.store.enable_webhook_endpoint(tenant, name)

    _changed_or_exit(_run(go), tenant, name)
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

    _changed_or_exit(_run(go), tenant, name)
    if chosen is None:
        out.print(f"{name} of {tenant} now signs with its newest secret only")
        return
    out.print(f"{name} of {tenant} now signs with two secrets; --finish when the receiver switched")
    if secret is None:
        sys.stdout.write(f"new signing secret (shown once): {chosen}\n")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
