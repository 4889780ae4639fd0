"""The one-job runner plug-in authors test with (queue_service.testing):
each outcome as the engine writes it."""

from __future__ import annotations

import psycopg
import pytest

from queue_service.errors import UnknownJobTypeError
from queue_service.store.migrate import apply_migrations
from queue_service.testing.jobs import JobRunner
from tests.integration.conftest import make_settings
from tests.support.greetings_plugin import MIGRATIONS
from tests.support.greetings_plugin import PROCESSORS as PLUGIN
from tests.support.processors import PROCESSORS


@pytest.fixture
def runner(database_url: str) -> JobRunner:
    apply_migrations(database_url, [MIGRATIONS])
    settings = make_settings(database_url, queue_service_processors="")
    return JobRunner(settings, database_url, [PROCESSORS, PLUGIN])


async def test_a_completed_job_writes_its_effect_and_result(
    runner: JobRunner, database_url: str
) -> None:
    run = await runner.arun("plugin.greet", {"name": "Ada", "shout": True})

    assert run.status == "completed" and run.result == {"said": "hello Ada"}
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT text FROM plugin_greetings").fetchall() == [("HELLO ADA",)]


async def test_a_retryable_failure_leaves_the_job_waiting_with_its_error(
    runner: JobRunner,
) -> None:
    run = await runner.arun("test.fail", {"mode": "retryable", "message": "upstream 503"})

    assert run.status == "delayed" and run.job.attempts == 1  # until its backoff is over
    assert run.error is not None and "upstream 503" in run.error


async def test_a_permanent_failure_fails_the_job_at_once(runner: JobRunner) -> None:
    run = await runner.arun("test.fail", {"mode": "permanent", "message": "declined"})

    assert run.status == "failed" and run.error is not None and "declined" in run.error


async def test_a_handler_past_its_timeout_is_stopped_and_retried_later(
    runner: JobRunner,
) -> None:
    # test.timeout allows 0.3 s; the handler would sleep for 30.
    run = await runner.arun("test.timeout", {"seconds": 30})

    assert run.status == "delayed" and run.job.attempts == 1
    assert run.error is not None and "timed out after 0.3 s" in run.error


async def test_an_unknown_type_is_refused_before_anything_runs(runner: JobRunner) -> None:
    with pytest.raises(UnknownJobTypeError, match=r"did you mean 'plugin\.greet'"):
        await runner.arun("plugin.gret", {})
