"""The on-call operator lists what fired and acknowledges it from the command
line, whatever tenant setup the API has."""

from __future__ import annotations

import asyncio
from uuid import UUID

from queue_service.runtime.service import open_runtime
from queue_service.store.alerts import AlertRecord
from tests.e2e.test_cli import cli
from tests.integration.conftest import make_settings


async def _fire(database_url: str) -> str:
    async with open_runtime(make_settings(database_url), database_url) as rt:
        firing = await rt.store.alert_observe(
            rule="money_queue_depth",
            fire_key="money_queue_depth",
            severity="critical",
            value=51,
            threshold=50,
            message="money queue depth: 51 jobs ready to run (alert above 50)",
        )
    return str(firing.id)


async def _get(database_url: str, alert_id: str) -> AlertRecord | None:
    async with open_runtime(make_settings(database_url), database_url) as rt:
        return await rt.store.get_alert(UUID(alert_id))


def test_an_operator_lists_a_firing_and_acknowledges_it(database_url: str) -> None:
    alert_id = asyncio.run(_fire(database_url))
    listed = cli(database_url, "alerts", "list", "--status", "firing").stdout
    assert alert_id in listed and "money_queue_depth" in listed

    acked = cli(database_url, "alerts", "ack", alert_id).stdout
    assert "money_queue_depth (critical) acknowledged by cli:" in acked
    record = asyncio.run(_get(database_url, alert_id))
    assert record is not None and record.status == "acknowledged"
    assert (
        "money_queue_depth" not in cli(database_url, "alerts", "list", "--status", "firing").stdout
    )

    unknown = cli(
        database_url, "alerts", "ack", "00000000-0000-0000-0000-000000000000", check=False
    )
    assert unknown.returncode == 1 and "no alert" in unknown.stderr
