"""/schedules through HTTP: add (checked like an enqueue), list with keyset
pagination, remove; another tenant's schedule is a 404; refused bodies are
422 problems that name what is wrong, and nothing is written."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import OTHER_TENANT, TENANT, Api

PROBLEM = "application/problem+json"


def body(name: str = "hourly", **fields: Any) -> dict[str, Any]:
    return {"name": name, "cron": "0 * * * *", "type": "test.echo", "data": {"value": 1}, **fields}


def admin(api: Api, tenant: str = TENANT) -> dict[str, str]:
    return api.auth("admin-1", tenant, "admin")


def schedule_count(api: Api) -> int:
    return int(api.sql("SELECT count(*) FROM schedules WHERE tenant_id <> '_system'")[0][0])


async def test_an_admin_adds_lists_and_removes_a_schedule(api: Api) -> None:
    response = await api.client.post(
        "/schedules",
        json=body(timezone="Europe/Paris", cron="30 2 * * MON-FRI", misfire="skip"),
        headers=admin(api),
    )
    assert response.status_code == 201, response.text
    added = response.json()
    assert {k: added[k] for k in ("name", "cron", "timezone", "type", "data", "active")} == {
        "name": "hourly",
        "cron": "30 2 * * MON-FRI",
        "timezone": "Europe/Paris",
        "type": "test.echo",
        "data": {"value": 1},
        "active": True,
    }
    assert added["misfire"] == "skip" and added["last_fired_at"] is None
    assert added["explain"] == "At 02:30 on Monday through Friday (Europe/Paris)"
    assert added["next_run_at"].endswith(("+00:00", "Z"))

    listed = (await api.client.get("/schedules", headers=admin(api))).json()
    assert listed == {"items": [added], "next_cursor": None}

    api.sql(
        "INSERT INTO schedule_runs (schedule_id, tenant_id, fire_at, status)"
        " VALUES (%s, %s, now(), 'skipped')",
        added["id"],
        TENANT,
    )
    gone = await api.client.delete(f"/schedules/{added['id']}", headers=admin(api))
    assert gone.status_code == 200 and gone.json()["id"] == added["id"]
    assert api.sql("SELECT count(*) FROM schedule_runs") == [(0,)]  # its runs went with it
    again = await api.client.delete(f"/schedules/{added['id']}", headers=admin(api))
    assert again.status_code == 404 and again.headers["content-type"] == PROBLEM


async def test_schedules_page_by_keyset_and_each_tenant_sees_only_its_own(api: Api) -> None:
    for i in range(5):
        response = await api.client.post("/schedules", json=body(f"s{i}"), headers=admin(api))
        assert response.status_code == 201, response.text
    theirs = await api.client.post("/schedules", json=body("s0"), headers=admin(api, OTHER_TENANT))
    assert theirs.status_code == 201  # names are unique per tenant

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api.client.get("/schedules", params=params, headers=admin(api))).json()
        seen += [s["name"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"s{i}" for i in range(5)]

    other = await api.client.delete(f"/schedules/{theirs.json()['id']}", headers=admin(api))
    assert other.status_code == 404
    assert schedule_count(api) == 6


async def test_a_duplicate_name_is_a_409(api: Api) -> None:
    assert (await api.client.post("/schedules", json=body(), headers=admin(api))).status_code == 201
    response = await api.client.post("/schedules", json=body(), headers=admin(api))
    assert response.status_code == 409
    assert "already has a schedule 'hourly'" in response.json()["detail"]


async def test_a_bad_cron_or_time_zone_is_a_422_saying_why_and_nothing_is_written(
    api: Api,
) -> None:
    cases = [
        (body(cron="61 * * * *"), ["Bad minute", "minute hour day-of-month month day-of-week"]),
        (body(cron="* * *"), ["has 3 fields", "e.g. '*/15 * * * *'"]),
        (body(cron="0 0 * * * *"), ["has 6 fields"]),
        (body(timezone="Europe/Pariss"), ["unknown time zone", "did you mean 'Europe/Paris'"]),
        (body(type="test.sleep", data={"seconds": "soon"}), ["data.seconds"]),
        (body(type="test.nope"), ["unknown job type 'test.nope'"]),
        (body(misfire="later"), ["misfire"]),
        (body(name="no spaces"), ["name"]),
    ]
    for sent, phrases in cases:
        response = await api.client.post("/schedules", json=sent, headers=admin(api))
        assert response.status_code == 422, (sent, response.text)
        assert response.headers["content-type"] == PROBLEM
        detail = response.json()["detail"]
        assert all(p in detail for p in phrases), (sent, detail)
    assert schedule_count(api) == 0
