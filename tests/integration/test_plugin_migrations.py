"""A plug-in's own migrations: applied after the engine's, in their own
namespace, under the same lock, with checksums in the same history."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from queue_service.core.migration_sets import MigrationSet
from queue_service.store.migrate import (
    MigrationError,
    apply_migrations,
    migration_plan,
    pending_migrations,
    shipped_migrations,
)
from tests.support.greetings_plugin import MIGRATIONS
from tests.support.processes import REPO

ENGINE = [m.label for m in shipped_migrations()]
PLUGIN = ["plugin_greetings/0001_greetings", "plugin_greetings/0002_said_at"]


def _history(url: str, namespace: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT version, name, checksum FROM schema_migrations WHERE namespace = %s"
            " ORDER BY version",
            (namespace,),
        ).fetchall()


def _package(root: Path, name: str, files: dict[str, str]) -> str:
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for file, sql in files.items():
        (pkg / file).write_text(sql)
    return name


def test_a_plugins_migrations_run_after_the_engines_in_their_own_namespace(
    empty_database_url: str,
) -> None:
    assert pending_migrations(empty_database_url, [MIGRATIONS]) == ENGINE + PLUGIN

    assert apply_migrations(empty_database_url, [MIGRATIONS]) == ENGINE + PLUGIN

    history = _history(empty_database_url, "plugin_greetings")
    assert [(v, n) for v, n, _ in history] == [(1, "greetings"), (2, "said_at")]
    plan = {m.label: m.checksum for m in migration_plan([MIGRATIONS])}
    assert [c for *_, c in history] == [plan[label] for label in PLUGIN]
    assert [v for v, *_ in _history(empty_database_url, "queue_service")][:2] == [1, 2]
    with psycopg.connect(empty_database_url) as conn:
        conn.execute("INSERT INTO plugin_greetings (job_id, text) VALUES (gen_random_uuid(), 'x')")
    assert apply_migrations(empty_database_url, [MIGRATIONS]) == []
    assert pending_migrations(empty_database_url, [MIGRATIONS]) == []


def test_a_plugin_added_later_gets_only_its_own_files(database_url: str) -> None:
    assert pending_migrations(database_url, [MIGRATIONS]) == PLUGIN

    assert apply_migrations(database_url, [MIGRATIONS]) == PLUGIN


def test_a_changed_plugin_migration_is_refused(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    pkg = _package(tmp_path, "qs_edited_plugin", {"0001_t.sql": "CREATE TABLE edited_t (i int);"})
    declared = MigrationSet("edited", pkg)
    assert apply_migrations(database_url, [declared]) == ["edited/0001_t"]

    (tmp_path / pkg / "0001_t.sql").write_text("CREATE TABLE edited_t (i bigint);")

    with pytest.raises(MigrationError, match="edited/0001_t was changed after it was applied"):
        apply_migrations(database_url, [declared])


def test_plugin_files_with_a_gap_are_refused_before_anything_runs(
    empty_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    files = {"0001_a.sql": "CREATE TABLE gap_a (i int);", "0003_c.sql": "SELECT 1;"}
    declared = MigrationSet("gappy", _package(tmp_path, "qs_gappy_plugin", files))

    with pytest.raises(MigrationError, match=r"'gappy'.*without gaps, got \[1, 3\]"):
        apply_migrations(empty_database_url, [declared])

    assert pending_migrations(empty_database_url) == ENGINE  # not even the engine's ran


def test_one_namespace_for_two_packages_is_refused() -> None:
    other = MigrationSet("plugin_greetings", "tests.support")
    with pytest.raises(MigrationError, match="declared twice"):
        migration_plan([MIGRATIONS, other])


def test_a_missing_migrations_package_is_named() -> None:
    with pytest.raises(MigrationError, match=r"cannot read package 'nope\.migrations'"):
        migration_plan([MigrationSet("nope", "nope.migrations")])


def test_a_history_from_before_plugins_is_upgraded_in_place(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        # The history's shape before namespaces existed.
        conn.execute("ALTER TABLE schema_migrations DROP CONSTRAINT schema_migrations_pkey")
        conn.execute("ALTER TABLE schema_migrations DROP COLUMN namespace")
        conn.execute("ALTER TABLE schema_migrations ADD PRIMARY KEY (version)")
    assert pending_migrations(database_url, [MIGRATIONS]) == PLUGIN

    assert apply_migrations(database_url, [MIGRATIONS]) == PLUGIN

    assert len(_history(database_url, "queue_service")) == len(ENGINE)
    assert len(_history(database_url, "plugin_greetings")) == 2


# Each child waits for "go" on stdin, so both start migrating together.
_RUNNER = textwrap.dedent(
    """
    import json, sys
    from queue_service.store.migrate import apply_migrations
    from tests.support.greetings_plugin import MIGRATIONS
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(apply_migrations(sys.argv[1], [MIGRATIONS])), flush=True)
    """
)


def test_concurrent_runners_apply_each_plugin_file_once(empty_database_url: str) -> None:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _RUNNER, empty_database_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for _ in range(2)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    results = [child.communicate("go\n", timeout=120) for child in children]

    for child, (_out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
    applied = [label for out, _err in results for label in json.loads(out)]
    assert sorted(applied) == sorted(ENGINE + PLUGIN)  # every file once, by one of them
