"""`queue-service types` and a plug-in's configuration as the CLI reads it:
real processes, real database."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from tests.support.greetings_plugin.cli import PLUGIN, cli


def test_types_lists_a_plugins_job_type_with_its_queue_options_and_schema(
    database_url: str,
) -> None:
    done = cli(database_url, "types", "--json")
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)

    greet = next(t for t in found["types"] if t["type"] == "plugin.greet")
    assert greet["queue"] == "communication"
    assert greet["lease_seconds"] == 15 and greet["retry"]["max_attempts"] == 3
    assert greet["payload_schema"]["required"] == ["name"]
    assert greet["payload_schema"]["properties"]["shout"]["default"] is False
    assert greet["payload_schema"]["additionalProperties"] is False
    assert greet["source"] == f"QUEUE_SERVICE_PROCESSORS {PLUGIN!r}"
    communication = next(q for q in found["queues"] if q["name"] == "communication")
    assert "plugin.greet" in communication["types"] and "email.send" in communication["types"]
    assert found["migrations"] == [
        {"namespace": "plugin_greetings", "package": "tests.support.greetings_plugin.migrations"}
    ]

    table = cli(database_url, "types").stdout
    assert "plugin.greet" in table and "name, shout?" in table


def test_types_of_one_unknown_type_suggests_the_closest_and_exits_2(database_url: str) -> None:
    done = cli(database_url, "types", "plugin.gret")

    assert done.returncode == 2
    assert "unknown job type 'plugin.gret'" in done.stderr
    assert "did you mean 'plugin.greet'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_cli_command_applies_a_plugins_migrations_at_start_up(database_url: str) -> None:
    data = ["--data", '{"name": "Ada"}', "--tenant", "acme"]
    done = cli(database_url, "enqueue", "plugin.greet", *data)

    assert done.returncode == 0, done.stderr
    assert (
        "applied migrations: plugin_greetings/0001_greetings, plugin_greetings/0002_said_at"
        in done.stderr
    )
    assert json.loads(done.stdout)["job"]["type"] == "plugin.greet"
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM plugin_greetings").fetchone() == (0,)


def test_the_cli_without_the_plugin_says_the_type_is_unknown(database_url: str) -> None:
    done = cli(
        database_url,
        "enqueue",
        "plugin.greet",
        "--tenant",
        "acme",
        **{"QUEUE_SERVICE_PROCESSORS": ""},
    )

    assert done.returncode == 1
    assert "unknown job type 'plugin.greet'" in done.stderr
    assert "QUEUE_SERVICE_PROCESSORS" in done.stderr and "queue-service types" in done.stderr


def test_migrate_names_a_plugin_that_does_not_load(database_url: str) -> None:
    done = cli(database_url, "migrate", QUEUE_SERVICE_PROCESSORS="tests.support.nope:PROCESSORS")

    assert done.returncode == 2
    assert "cannot import 'tests.support.nope'" in done.stderr
    assert "Traceback" not in done.stderr
