"""Processors load from entry points and QUEUE_SERVICE_PROCESSORS, and a
registry that does not fit together is refused at start-up with a message."""

from __future__ import annotations

import pytest

from queue_service.core.catalog import QueueConfig
from queue_service.errors import UnknownJobTypeError
from queue_service.processors.base import EmptyPayload, processor
from queue_service.processors.context import JobContext
from queue_service.processors.registry import Registry, RegistryError, load_registry


@processor("x.one", payload=EmptyPayload, queue="background")
async def one(ctx: JobContext, p: EmptyPayload) -> None:
    return None


def test_the_builtin_entry_point_provides_maintenance_and_the_bench_type() -> None:
    registry = load_registry()
    assert {"cleanup.run", "maintenance.run", "bench.noop"} <= set(registry.job_types)
    assert {q.name for q in registry.queues} >= {"money", "communication", "background", "bench"}


def test_processors_load_from_module_attribute_paths() -> None:
    registry = load_registry(paths=["tests.support.processors:PROCESSORS"])
    assert "test.echo" in registry.job_types
    assert registry.queue("test").concurrency == 5
    assert registry.processor("test.capped").options.concurrency == 2


def test_a_bad_path_says_what_is_wrong() -> None:
    with pytest.raises(RegistryError, match=r"cannot import 'nope\.missing'"):
        load_registry(paths=["nope.missing:X"], use_entry_points=False)
    with pytest.raises(RegistryError, match="has no attribute 'NOPE'"):
        load_registry(paths=["tests.support.processors:NOPE"], use_entry_points=False)
    with pytest.raises(RegistryError, match="expected a Processor"):
        load_registry(extra=[42], use_entry_points=False)


def test_a_job_type_defined_twice_is_refused_naming_both_sources() -> None:
    registry = Registry()
    registry.add(one, "plugin a")
    with pytest.raises(RegistryError, match="defined twice: by plugin a and by plugin b"):
        registry.add(one, "plugin b")


def test_a_processor_on_an_unknown_queue_is_refused_with_a_suggestion() -> None:
    @processor("x.two", payload=EmptyPayload, queue="backgrund")
    async def two(ctx: JobContext, p: EmptyPayload) -> None:
        return None

    with pytest.raises(RegistryError, match="did you mean 'background'"):
        Registry().add(two)


def test_unknown_job_types_suggest_the_closest_name() -> None:
    registry = Registry()
    registry.add(one)
    with pytest.raises(UnknownJobTypeError, match=r"did you mean 'x\.one'"):
        registry.processor("x.on")


def test_queue_overrides_tune_limits() -> None:
    registry = load_registry(
        queue_overrides=lambda q: QueueConfig(q.name, 3) if q.name == "money" else q
    )
    assert registry.queue("money").concurrency == 3
