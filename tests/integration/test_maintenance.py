"""The leader's periodic jobs: retention (archive or delete finished jobs,
purge dead letters) and expiry (idempotency keys, service nonces)."""

from __future__ import annotations

from uuid import UUID

import psycopg

from queue_service.core.catalog import SYSTEM_TENANT
from queue_service.core.jobs import EnqueueRequest, JobStatus
from queue_service.runtime.duties import leader_duties
from queue_service.runtime.leader import Leader
from queue_service.runtime.service import Runtime
from queue_service.store.session import LeaderSession
from tests.integration.conftest import WorkerFactory
from tests.support.waiting import eventually


def _finished(
    conn: psycopg.Connection[tuple[object, ...]],
    job_type: str,
    days_ago: int,
    status: str = "completed",
) -> UUID:
    row = conn.execute(
        "INSERT INTO finished_jobs (id, tenant_id, queue, type, status, priority, data, "
        "attempts, max_attempts, stalled_count, max_stalled, lease_seconds, created_at, "
        "run_at, finished_at) VALUES (gen_random_uuid(), 't1', 'q', %s, %s, 5, '{}', 1, 3, "
        "0, 3, 30, now(), now(), now() - make_interval(days => %s)) RETURNING id",
        (job_type, status, days_ago),
    ).fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def _run_system_job(runtime: Runtime, run_worker: WorkerFactory, job_type: str) -> object:
    done = await runtime.manager.enqueue(EnqueueRequest(job_type, {}, SYSTEM_TENANT))
    run_worker(("background",))

    async def finished() -> bool:
        return (await runtime.manager.get(done.job_id)).status is JobStatus.COMPLETED

    await eventually(finished, what=job_type)
    return (await runtime.manager.get(done.job_id)).result


async def test_cleanup_archives_money_jobs_and_deletes_others_past_their_window(
    runtime: Runtime, run_worker: WorkerFactory, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        old_payment = _finished(conn, "payment.process", 91)
        young_payment = _finished(conn, "payment.process", 89)
        old_email = _finished(conn, "email.send", 8)
        young_email = _finished(conn, "email.send", 6)
        old_mint = _finished(conn, "ticket.mint", 200)
        old_other = _finished(conn, "analytics.track", 15)
        conn.execute(
            "INSERT INTO dead_letter_jobs (id, tenant_id, original_job_id, queue, type, data, "
            "attempts, failed_at) VALUES (gen_random_uuid(), 't1', gen_random_uuid(), 'q', "
            "'x.y', '{}', 3, now() - interval '91 days'), (gen_random_uuid(), 't1', "
            "gen_random_uuid(), 'q', 'x.y', '{}', 3, now())"
        )
    report = await _run_system_job(runtime, run_worker, "cleanup.run")
    assert isinstance(report, dict)
    assert report["dead_letters"] == 1
    with psycopg.connect(database_url) as conn:
        kept = {
            r[0]
            for r in conn.execute(
                "SELECT id FROM finished_jobs WHERE type <> 'cleanup.run'"
            ).fetchall()
        }
        archived = {r[0] for r in conn.execute("SELECT id FROM job_archive").fetchall()}
        dead = conn.execute("SELECT count(*) FROM dead_letter_jobs").fetchone()
    assert kept == {young_payment, young_email, old_mint}
    assert archived == {old_payment}
    assert old_email not in kept | archived and old_other not in kept | archived
    assert dead == (1,)
    # An archived job is still readable by id.
    assert (await runtime.manager.get(old_payment)).status is JobStatus.COMPLETED


async def test_maintenance_expires_idempotency_keys_and_old_nonces(
    runtime: Runtime, run_worker: WorkerFactory, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO queue_idempotency_keys (tenant_id, key, job_id, payload_hash, "
            "expires_at) VALUES ('t1', 'old', gen_random_uuid(), 'h', now() - "
            "interval '1 s'), ('t1', 'live', gen_random_uuid(), 'h', now() + "
            "interval '1 h')"
        )
        conn.execute(
            "INSERT INTO internal_nonces (service, nonce, seen_at) VALUES "
            "('order-service', 'n1', now() - interval '10 min'), "
            "('order-service', 'n2', now())"
        )
    report = await _run_system_job(runtime, run_worker, "maintenance.run")
    assert report == {"idempotency_keys": 1, "nonces": 1}


def _built_ins_due(database_url: str) -> None:
    """The built-in cleanup and maintenance schedules' tick has come (no
    waiting for the hour)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE schedules SET next_run_at = date_trunc('hour', now())")


async def test_the_leader_enqueues_each_maintenance_job_once_per_period(
    runtime: Runtime, database_url: str
) -> None:
    _built_ins_due(database_url)
    leader = Leader(LeaderSession(runtime.conninfo), leader_duties(runtime.manager))
    try:
        await leader.tick()
        await leader.tick()
    finally:
        await leader.session.release()
    # A fail-over in the same hour: the next leader finds the tick fired.
    successor = Leader(LeaderSession(runtime.conninfo), leader_duties(runtime.manager))
    try:
        await successor.tick()
        assert successor.is_leader
    finally:
        await successor.session.release()
    counts = await runtime.store.queue_counts()
    assert counts["background"].waiting == 2


async def test_cleanup_forgets_old_delivery_records_and_sent_ledger_rows(
    runtime: Runtime, run_worker: WorkerFactory, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for days in (31, 1):
            conn.execute(
                "INSERT INTO webhook_deliveries (tenant_id, job_id, webhook_id, target, attempt,"
                " outcome, at) VALUES ('t1', gen_random_uuid(), 'msg_1', 'https://x/h', 1,"
                " 'delivered', now() - make_interval(days => %s))",
                (days,),
            )
        for key, days in (("old", 15), ("young", 1)):
            conn.execute(
                "INSERT INTO sent_messages (tenant_id, message_key, channel, job_id, provider,"
                " provider_ref, sent_at) VALUES ('t1', %s, 'email', gen_random_uuid(), 'smtp',"
                " '<m@x>', now() - make_interval(days => %s))",
                (key, days),
            )
    report = await _run_system_job(runtime, run_worker, "cleanup.run")
    assert isinstance(report, dict)
    assert (report["webhook_deliveries"], report["sent_messages"]) == (1, 1)
    with psycopg.connect(database_url) as conn:
        keys = conn.execute("SELECT message_key FROM sent_messages").fetchall()
        deliveries = conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone()
    assert keys == [("young",)] and deliveries == (1,)


class Broken:
    name = "broken"
    every_seconds = 0.0

    async def run(self) -> None:
        raise ZeroDivisionError("a bug in one duty")


class Counting:
    name = "counting"
    every_seconds = 3600.0

    def __init__(self) -> None:
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1


async def test_a_failing_duty_does_not_stop_the_others_and_each_runs_on_its_own_period(
    runtime: Runtime, database_url: str
) -> None:
    _built_ins_due(database_url)
    counting = Counting()
    leader = Leader(
        LeaderSession(runtime.conninfo), [Broken(), *leader_duties(runtime.manager), counting]
    )
    try:
        await leader.tick()
        await leader.tick()
    finally:
        await leader.session.release()
    assert counting.runs == 1  # hourly: once, though the leader ticked twice
    counts = await runtime.store.queue_counts()
    assert counts["background"].waiting == 2  # the schedules ran after the broken duty
