"""Wiring: open the database, load processors, and run workers and leader
duties until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, replace
from functools import cached_property

import structlog

from queue_service.core.catalog import QueueConfig
from queue_service.core.config_text import suggestion
from queue_service.processors.deps import ProcessorDeps
from queue_service.processors.registry import Registry, configured_registry
from queue_service.providers import Providers
from queue_service.runtime.attempt_metrics import MetricsHook
from queue_service.runtime.attempt_spans import tracing_hooks
from queue_service.runtime.duties import leader_duties
from queue_service.runtime.gauges import DatabaseGauges
from queue_service.runtime.leader import Leader
from queue_service.runtime.manager import JobManager
from queue_service.runtime.outbound import SharedGate
from queue_service.runtime.worker import Worker
from queue_service.settings import Settings
from queue_service.store import Database, Store
from queue_service.store.fair import ensure_fair_indexes
from queue_service.store.session import LeaderSession

log = structlog.get_logger("queue_service.service")


@dataclass
class Runtime:
    """What an open process holds: the pool, the store, the job types."""

    settings: Settings
    conninfo: str
    db: Database
    store: Store
    registry: Registry
    manager: JobManager

    @cached_property
    def deps(self) -> ProcessorDeps:
        """What handlers use (ctx.deps), made when a worker first needs it: an
        API-only process never builds providers."""
        return ProcessorDeps(
            settings=self.settings,
            store=self.store,
            providers=Providers(self.settings),
            gate=SharedGate(
                self.store,
                self.settings.outbound_limits,
                self.settings.breaker_policy,
                slot_seconds=self.settings.queue_service_outbound_slot_seconds,
            ),
        )

    @cached_property
    def gauges(self) -> DatabaseGauges:
        """The database-true gauges this process's /metrics reads (cached ~1 s)."""
        return DatabaseGauges(
            self.store,
            [q.name for q in self.registry.queues],
            self.settings.outbound_limits,
            self.settings.breaker_policy,
        )

    @property
    def listen_conninfo(self) -> str | None:
        if self.settings.database_listen_url is not None:
            return self.settings.database_listen_url.get_secret_value()
        # Behind PgBouncer in transaction mode LISTEN would be silently
        # deaf: workers rely on polling alone there.
        return None if self.settings.queue_service_pgbouncer else self.conninfo


def loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux, macOS): a faster event loop for the
    HTTP API and the workers; the standard loop elsewhere."""
    if settings.queue_service_event_loop != "uvloop":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def freeze_startup_heap() -> None:
    """Hide what start-up allocated (modules, models, routes, the registry:
    ~85,000 objects) from the cyclic garbage collector, so its full
    collections, which a 1,000-job batch triggers, scan only what runs since.
    Measured ~5% on batch enqueue; the same trick long-lived CPython servers
    use (gc.freeze, Python 3.7+). For processes that own their lifetime: the
    service's commands and the benchmark."""
    gc.collect()
    gc.freeze()


def apply_fairness(registry: Registry, settings: Settings) -> None:
    """Set fair queues and per-tenant caps from the settings (decision 0020);
    a queue name the registry does not know is a start-up error."""
    known = [q.name for q in registry.queues]
    caps = settings.tenant_concurrency
    for variable, names in (
        ("QUEUE_SERVICE_FAIR_QUEUES", settings.fair_queues),
        ("QUEUE_SERVICE_TENANT_CONCURRENCY", caps.keys()),
    ):
        for name in sorted(set(names) - set(known)):
            raise ValueError(
                f"{variable} names queue {name!r}, which is not configured"
                + suggestion(name, known, otherwise=f"queues: {', '.join(known)}")
            )
    for queue in registry.queues:
        fair = queue.fair or queue.name in settings.fair_queues
        cap = caps.get(queue.name, queue.tenant_concurrency)
        if (fair, cap) != (queue.fair, queue.tenant_concurrency):
            registry.add_queue(replace(queue, fair=fair, tenant_concurrency=cap))


async def build_fair_indexes(runtime: Runtime, queues: Iterable[QueueConfig]) -> None:
    """Build the partial indexes of the fair ones among ``queues`` if they
    are missing (decision 0020): CREATE INDEX CONCURRENTLY, as the connecting
    user, on the direct connection when there is one (the build holds a
    session advisory lock, which PgBouncer's transaction mode would lose)."""
    conninfo = runtime.listen_conninfo or runtime.conninfo
    for queue in queues:
        if not queue.is_fair:
            continue
        capped = queue.tenant_concurrency is not None
        built = await asyncio.to_thread(ensure_fair_indexes, conninfo, queue.name, capped=capped)
        if built:
            log.info("fair queue indexes built", queue=queue.name, indexes=built)


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings,
    conninfo: str,
    *,
    extra_processors: Iterable[object] = (),
    queue_overrides: Callable[[QueueConfig], QueueConfig] | None = None,
    pool_size: int | None = None,
) -> AsyncIterator[Runtime]:
    db = Database(
        conninfo,
        max_size=pool_size or settings.queue_service_pool_size,
        prepare=not settings.queue_service_pgbouncer,
        pgbouncer=settings.queue_service_pgbouncer,
        # Behind PgBouncer the lane's prepared statements are not safe either.
        insert_lane=0 if settings.queue_service_pgbouncer else settings.queue_service_insert_lane,
        coalesce_seconds=settings.queue_service_enqueue_coalesce_ms / 1000,
        coalesce_max=settings.queue_service_enqueue_coalesce_max,
    )
    store = Store(db)
    registry = configured_registry(
        settings, extra=extra_processors, queue_overrides=queue_overrides
    )
    apply_fairness(registry, settings)
    for queue in registry.queues:
        log.info("job types loaded", queue=queue.name, types=registry.types_in_queue(queue.name))
    await db.open()
    runtime = Runtime(settings, conninfo, db, store, registry, JobManager(store, registry))
    try:
        yield runtime
    finally:
        if "deps" in runtime.__dict__:
            await runtime.deps.providers.aclose()
        await db.close()


async def run_until_stopped(
    runtime: Runtime,
    stop: asyncio.Event,
    *,
    queues: list[str] | None = None,
    leader: bool = True,
    started: asyncio.Event | None = None,
    force: asyncio.Event | None = None,
) -> None:
    """Run workers (for ``queues``, default all) and, if asked, leader duties;
    ``started`` is set once the workers are claiming; ``force`` cuts their
    drain short (a second signal)."""
    settings = runtime.settings
    names = queues if queues is not None else [q.name for q in runtime.registry.queues]
    await build_fair_indexes(runtime, (runtime.registry.queue(n) for n in names))
    worker = Worker(
        runtime.manager,
        [runtime.registry.queue(n) for n in names],
        deps=runtime.deps,
        worker_id=settings.queue_service_worker_id,
        listen_conninfo=runtime.listen_conninfo,
        poll_interval=settings.queue_service_poll_interval_seconds,
        grace_seconds=settings.queue_service_shutdown_grace_seconds,
        hooks=[MetricsHook(runtime.registry.queue(n) for n in names), *tracing_hooks()],
    )
    leader_task: asyncio.Task[None] | None = None
    if leader:
        elected = Leader(
            LeaderSession(
                runtime.listen_conninfo or runtime.conninfo,
                settings.queue_service_leader_interval_seconds,
            ),
            leader_duties(
                runtime.manager,
                deps=runtime.deps,
                interval=settings.queue_service_leader_interval_seconds,
            ),
            interval=settings.queue_service_leader_interval_seconds,
        )
        leader_task = asyncio.create_task(elected.run(), name="leader")
    try:
        await worker.run(stop, started, force)
    finally:
        if leader_task is not None:
            leader_task.cancel()
            await asyncio.gather(leader_task, return_exceptions=True)


def install_signal_handlers(stop: asyncio.Event, force: asyncio.Event | None = None) -> None:
    """SIGTERM or SIGINT starts a graceful drain (``stop``); a second one
    forces the exit (``force``: held jobs are released at once); a third is
    left to Python."""
    loop = asyncio.get_running_loop()

    def _on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if not stop.is_set():
            log.info("signal received, draining (send it again to force the exit)", signal=name)
            stop.set()
            if force is not None:
                return
        else:
            log.warning("second signal: forcing the exit, releasing held jobs now", signal=name)
            if force is not None:
                force.set()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig)
