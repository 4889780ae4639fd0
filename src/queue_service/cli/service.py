"""Running the service: serve, api, worker; and migrate and token."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer

from queue_service.api.app import create_app
from queue_service.api.server import check_can_listen, serve_http
from queue_service.api.state import ApiState, build_api_state
from queue_service.cli.app import (
    SETTINGS_HELP,
    app,
    cli_database,
    configure_cli_logging,
    err,
    load_cli_settings,
    log,
    out,
)
from queue_service.cli.progress import migrate_with_progress
from queue_service.errors import StartupError
from queue_service.observability.tracing import setup_tracing
from queue_service.processors.registry import configured_registry
from queue_service.providers.status import production_refusal, provider_statuses
from queue_service.runtime.metrics_server import MetricsServer
from queue_service.runtime.service import (
    Runtime,
    freeze_startup_heap,
    install_signal_handlers,
    loop_factory,
    open_runtime,
    run_until_stopped,
)
from queue_service.settings import Settings
from queue_service.store.embedded import check_database_choice
from queue_service.store.preflight import check_database


async def _mark_started(state: ApiState, workers: asyncio.Event, stop: asyncio.Event) -> None:
    """Mark the process started once its workers claim; lives until ``stop``
    (one of _first_failure's tasks: it must not end before the others)."""
    waits = [asyncio.create_task(workers.wait()), asyncio.create_task(stop.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        state.started = workers.is_set()
        await stop.wait()
    finally:
        for task in waits:
            task.cancel()


def _check_leader_session(settings: Settings, command: str) -> None:
    """A leader candidate behind PgBouncer needs a direct connection for its lock.

    The leader's lock is a session advisory lock: through transaction pooling
    it lands on whichever server connection, outlives its holder and can be
    taken twice (docs/scale-out.md). Refused rather than quietly opted out, so
    a fleet of workers behind PgBouncer is never left with no candidate at all
    (decision 0022).
    """
    if settings.queue_service_pgbouncer and settings.database_listen_url is None:
        raise StartupError(
            f"`{command}` is a leader candidate, and QUEUE_SERVICE_PGBOUNCER=true needs"
            " DATABASE_LISTEN_URL, a direct (or session-mode) connection for its lock",
            "set DATABASE_LISTEN_URL, or QUEUE_SERVICE_LEADER_CANDIDATE=false for the"
            " processes that must not lead",
        )


def _serve(
    command: str, queues: list[str] | None, *, leader: bool, workers: bool, http: bool
) -> None:
    settings = load_cli_settings()
    configure_cli_logging(settings)
    leader = leader and settings.queue_service_leader_candidate
    check_database_choice(settings)  # before the providers: the first thing to fix
    if workers:
        _check_providers(settings)
    if leader:
        _check_leader_session(settings, command)
    if http:
        check_can_listen(settings.queue_service_host, settings.queue_service_port)
    if workers and settings.database_listen_url is not None:
        check_database(
            settings.database_listen_url.get_secret_value(), setting="DATABASE_LISTEN_URL"
        )
    log.info(
        "starting",
        command=command,
        leader_candidate=leader,
        workers=workers,
        http=http,
    )

    async def main(conninfo: str) -> None:
        stop, force = asyncio.Event(), asyncio.Event()
        install_signal_handlers(stop, force)
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
                            keep_alive_seconds=settings.queue_service_http_keep_alive_seconds,
                        )
                    )
                )
            workers_started = asyncio.Event()
            if workers:
                tasks.append(
                    asyncio.create_task(
                        run_until_stopped(
                            runtime,
                            stop,
                            queues=queues,
                            leader=leader,
                            started=workers_started,
                            force=force,
                        )
                    )
                )
            else:
                workers_started.set()
            if not http and settings.queue_service_metrics_port is not None:
                # A worker-only host is scrapable too (the API serves /metrics itself).
                tasks.append(asyncio.create_task(_metrics_server(settings, runtime).run(stop)))
            if state is not None:
                # /health/startup: migrations ran (before the runtime opened)
                # and the workers are claiming.
                tasks.append(asyncio.create_task(_mark_started(state, workers_started, stop)))
            freeze_startup_heap()
            try:
                await _first_failure(tasks, stop)
            finally:
                if state is not None:
                    await state.close()

    # Before the pool opens: its connections are made traced (decision 0015).
    tracing = setup_tracing(settings.tracing, environment=settings.queue_service_env)
    try:
        with (
            cli_database(settings) as conninfo,
            asyncio.Runner(loop_factory=loop_factory(settings)) as r,
        ):
            r.run(main(conninfo))
    finally:
        if tracing is not None:
            tracing.shutdown()  # exports the spans still queued


def _metrics_server(settings: Settings, runtime: Runtime) -> MetricsServer:
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    assert settings.queue_service_metrics_port is not None
    return MetricsServer(
        runtime.gauges, settings.queue_service_host, settings.queue_service_metrics_port, token
    )


def _check_providers(settings: Settings) -> None:
    """A process that runs jobs says what serves each kind of outside work, and
    in production refuses to run any on a development stand-in."""
    refusal = production_refusal(settings)
    if refusal is not None:
        raise StartupError(*refusal)
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


@app.command(epilog=SETTINGS_HELP)
def serve() -> None:
    """Run the HTTP API, workers for every queue and the leader duties (the default)."""
    _serve("serve", None, leader=True, workers=True, http=True)


@app.command(epilog=SETTINGS_HELP)
def api() -> None:
    """Run the HTTP API only (never a leader candidate)."""
    _serve("api", None, leader=False, workers=False, http=True)


@app.command(epilog=SETTINGS_HELP)
def worker(
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues (default: all)")
    ] = None,
) -> None:
    """Run workers (no HTTP API); a leader candidate unless
    QUEUE_SERVICE_LEADER_CANDIDATE=false."""
    names = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    _serve("worker", names, leader=True, workers=True, http=False)


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

    settings = load_cli_settings()
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
    settings = load_cli_settings()
    plugins = configured_registry(settings).migration_sets
    with cli_database(settings, migrate=False) as conninfo:
        applied = migrate_with_progress(conninfo, plugins)
    out.print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
