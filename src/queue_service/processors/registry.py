"""The processor registry and how it is filled.

Processors come from the entry-point group ``queue_service.processors`` and
from ``QUEUE_SERVICE_PROCESSORS`` (``module:attribute`` paths), so a team
adds job types without forking. An entry is a Processor, a QueueConfig, a
MigrationSet (the plug-in's own tables), or an iterable of them. Declaring
needs no dependencies: a handler reaches its providers at run time through
``ctx.deps``, so the API and producers load the same registry without
building any.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

from queue_service.core.catalog import SPEC_QUEUES, QueueConfig
from queue_service.core.config_text import suggestion
from queue_service.core.migration_sets import MigrationSet
from queue_service.errors import QueueServiceError, UnknownJobTypeError
from queue_service.processors.base import Processor
from queue_service.settings import Settings

ENTRY_POINT_GROUP = "queue_service.processors"


class RegistryError(QueueServiceError):
    """The processors on offer do not fit together (raised at start-up)."""


class UnknownQueueError(QueueServiceError):
    """No queue of that name is configured."""


class Registry:
    """Job types and queues known to this process."""

    def __init__(self, queues: Iterable[QueueConfig] = SPEC_QUEUES) -> None:
        self._queues: dict[str, QueueConfig] = {}
        self._processors: dict[str, Processor[Any]] = {}
        self._sources: dict[str, str] = {}
        self._migrations: dict[str, MigrationSet] = {}
        for queue in queues:
            self.add_queue(queue)

    def add_queue(self, queue: QueueConfig) -> None:
        # A later definition of a queue (a plugin tuning it) replaces the earlier.
        self._queues[queue.name] = queue

    def add(self, proc: Processor[Any], source: str = "code") -> None:
        if proc.job_type in self._processors:
            raise RegistryError(
                f"job type {proc.job_type!r} is defined twice: by {self._sources[proc.job_type]}"
                f" and by {source}"
            )
        if proc.options.queue not in self._queues:
            raise RegistryError(
                f"job type {proc.job_type!r} ({source}) names queue {proc.options.queue!r},"
                f" which is not configured{_suggest(proc.options.queue, self._queues)}"
            )
        self._processors[proc.job_type] = proc
        self._sources[proc.job_type] = source

    def add_migrations(self, declared: MigrationSet, source: str = "code") -> None:
        seen = self._migrations.get(declared.namespace)
        if seen is not None and seen != declared:
            raise RegistryError(
                f"migration namespace {declared.namespace!r} ({source}) is already declared"
                f" for package {seen.package!r}; give each plug-in its own namespace"
            )
        self._migrations[declared.namespace] = declared

    def add_entry(self, entry: object, source: str) -> None:
        """Add whatever an entry point or a ``module:attribute`` path named."""
        if isinstance(entry, Processor):
            self.add(entry, source)
        elif isinstance(entry, QueueConfig):
            self.add_queue(entry)
        elif isinstance(entry, MigrationSet):
            self.add_migrations(entry, source)
        elif isinstance(entry, Iterable) and not isinstance(entry, str | bytes):
            items = list(entry)
            # Queues first, so processors in the same entry may use them.
            for item in sorted(items, key=lambda i: not isinstance(i, QueueConfig)):
                self.add_entry(item, source)
        else:
            raise RegistryError(
                f"{source} is a {type(entry).__name__}; expected a Processor, a QueueConfig,"
                " a MigrationSet, or an iterable of them"
            )

    def processor(self, job_type: str) -> Processor[Any]:
        try:
            return self._processors[job_type]
        except KeyError:
            raise UnknownJobTypeError(
                f"unknown job type {job_type!r}{_suggest(job_type, self._processors)}"
            ) from None

    def queue(self, name: str) -> QueueConfig:
        try:
            return self._queues[name]
        except KeyError:
            raise UnknownQueueError(
                f"unknown queue {name!r}{_suggest(name, self._queues)}"
            ) from None

    @property
    def job_types(self) -> list[str]:
        return sorted(self._processors)

    @property
    def queues(self) -> list[QueueConfig]:
        return [self._queues[name] for name in sorted(self._queues)]

    def types_in_queue(self, queue: str) -> list[str]:
        return sorted(t for t, p in self._processors.items() if p.options.queue == queue)

    def source(self, job_type: str) -> str:
        """Where a job type came from (an entry point, a path, code)."""
        self.processor(job_type)
        return self._sources[job_type]

    @property
    def migration_sets(self) -> list[MigrationSet]:
        """The plug-ins' own schemas, by namespace."""
        return [self._migrations[n] for n in sorted(self._migrations)]


def _suggest(name: str, known: Iterable[str]) -> str:
    return suggestion(name, known)


def import_path(path: str) -> object:
    """Resolve ``package.module:attribute``."""
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"cannot import {module_name!r} (from {path!r}): {exc}") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise RegistryError(f"module {module_name!r} has no attribute {attribute!r}") from None


def load_registry(
    *,
    paths: Iterable[str] = (),
    extra: Iterable[object] = (),
    use_entry_points: bool = True,
    queue_overrides: Callable[[QueueConfig], QueueConfig] | None = None,
) -> Registry:
    """Build the registry from entry points, then paths, then ``extra``."""
    registry = Registry()
    if use_entry_points:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            registry.add_entry(ep.load(), f"entry point {ep.name!r} ({ep.value})")
    for path in paths:
        registry.add_entry(import_path(path), f"QUEUE_SERVICE_PROCESSORS {path!r}")
    for item in extra:
        registry.add_entry(item, "code")
    if queue_overrides is not None:
        for queue in registry.queues:
            registry.add_queue(queue_overrides(queue))
    return registry


def configured_registry(
    settings: Settings,
    *,
    extra: Iterable[object] = (),
    queue_overrides: Callable[[QueueConfig], QueueConfig] | None = None,
) -> Registry:
    """The registry every command builds alike (serve, worker, api, migrate,
    enqueue, dlq replay, types): entry points, then QUEUE_SERVICE_PROCESSORS."""
    return load_registry(
        paths=settings.processor_paths, extra=extra, queue_overrides=queue_overrides
    )
