"""How a plug-in declares its tables: a namespace of its own, checked at
declaration, gathered by the registry like its processors."""

from __future__ import annotations

import pytest

from queue_service.core.migration_sets import MigrationSet
from queue_service.processors.registry import Registry, RegistryError, load_registry


@pytest.mark.parametrize("namespace", ["Greetings", "1st", "with-dash", "queue_service", ""])
def test_a_namespace_that_could_collide_or_confuse_is_refused(namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        MigrationSet(namespace, "greetings.migrations")


def test_the_registry_gathers_migration_sets_from_an_entry_by_namespace() -> None:
    registry = load_registry(
        extra=[[MigrationSet("zeta", "z.migrations"), MigrationSet("alpha", "a.migrations")]],
        use_entry_points=False,
    )

    assert [m.namespace for m in registry.migration_sets] == ["alpha", "zeta"]


def test_the_same_declaration_twice_is_one_and_two_packages_in_one_namespace_are_refused() -> None:
    registry = Registry()
    registry.add_migrations(MigrationSet("greetings", "greetings.migrations"), "entry point")
    registry.add_migrations(MigrationSet("greetings", "greetings.migrations"), "path")
    assert len(registry.migration_sets) == 1

    with pytest.raises(
        RegistryError, match=r"already declared for package 'greetings\.migrations'"
    ):
        registry.add_migrations(MigrationSet("greetings", "other.migrations"), "path")
