"""GET /alerts and POST /alerts/{id}/acknowledge: platform alerts are read by
every tenant's users, filtered and keyset-paginated; only an admin of a
platform-operator tenant acknowledges, once, idempotently."""

from __future__ import annotations

from uuid import UUID

from queue_service.store import Store
from tests.api.conftest import OTHER_TENANT, TENANT, Api


async def fire(api: Api, rule: str, severity: str = "critical", value: float = 51) -> UUID:
    firing = await api.runtime.store.alert_observe(
        rule=rule,
        fire_key=rule,
        severity=severity,
        value=value,
        threshold=50,
        message=f"{rule}: {value:g} (alert above 50)",
    )
    return firing.id


async def test_every_tenants_users_read_the_platform_alerts(api: Api) -> None:
    alert_id = await fire(api, "money_queue_depth")

    for tenant in (TENANT, OTHER_TENANT):
        response = await api.client.get("/alerts", headers=api.auth("u1", tenant, "user"))
        assert response.status_code == 200
        [item] = response.json()["items"]
        assert item["id"] == str(alert_id)
        assert item["status"] == "firing"
        assert item["severity"] == "critical"
        assert item["message"] == "money_queue_depth: 51 (alert above 50)"


async def test_filters_and_keyset_pages_walk_every_alert_once(api: Api) -> None:
    store: Store = api.runtime.store
    ids = [await fire(api, name) for name in ("money_queue_depth", "money_failures")]
    ids.append(await fire(api, "background_queue_depth", "warning"))
    await store.alert_resolve("money_failures")
    await store.acknowledge_alert(ids[0], "ops")
    headers = api.auth("u1", TENANT, "user")

    async def listed(**query: str) -> list[str]:
        response = await api.client.get("/alerts", params=query, headers=headers)
        assert response.status_code == 200, response.text
        return [i["rule"] for i in response.json()["items"]]

    assert await listed(status="resolved") == ["money_failures"]
    assert await listed(status="acknowledged") == ["money_queue_depth"]
    assert await listed(status="firing") == ["background_queue_depth"]
    assert await listed(severity="warning") == ["background_queue_depth"]
    assert await listed(rule="money_failures") == ["money_failures"]

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await api.client.get("/alerts", params=params, headers=headers)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(i) for i in reversed(ids)]


async def test_an_operator_admin_acknowledges_once_and_again_changes_nothing(api: Api) -> None:
    alert_id = await fire(api, "money_queue_depth")
    headers = api.auth("ops@example.com", TENANT, "admin")

    first = await api.client.post(f"/alerts/{alert_id}/acknowledge", headers=headers)
    again = await api.client.post(
        f"/alerts/{alert_id}/acknowledge", headers=api.auth("other", TENANT, "admin")
    )

    assert first.status_code == again.status_code == 200
    assert first.json()["status"] == "acknowledged"
    assert again.json()["acknowledged_at"] == first.json()["acknowledged_at"]
    # The subject is masked: every tenant's users read it.
    assert again.json()["acknowledged_by"] == f"o***@example.com (tenant {TENANT})"


async def test_acknowledging_an_unknown_alert_is_a_404_problem(api: Api) -> None:
    response = await api.client.post(
        "/alerts/01900000-0000-7000-8000-000000000009/acknowledge",
        headers=api.auth("ops", TENANT, "admin"),
    )

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_admin_of_a_tenant_that_does_not_operate_the_platform_may_not_acknowledge(
    api: Api,
) -> None:
    alert_id = await fire(api, "money_queue_depth")

    response = await api.client.post(
        f"/alerts/{alert_id}/acknowledge", headers=api.auth("a", OTHER_TENANT, "admin")
    )

    assert response.status_code == 403
    assert "QUEUE_SERVICE_PLATFORM_OPERATOR_TENANTS" in response.json()["detail"]
    assert (await api.runtime.store.get_alert(alert_id)).acknowledged_at is None  # type: ignore[union-attr]
