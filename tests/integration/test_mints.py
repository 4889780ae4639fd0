"""ticket.mint / nft.mint against a real Solana JSON-RPC server and a real
minting service that verifies HMAC signatures (both on loopback), on real
PostgreSQL: one mint per ticket, the wallet balance checked first, the
status asked before any second mint, the email follow-up in the completion."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest

from queue_service.core.base58 import b58encode
from queue_service.core.jobs import JobStatus
from queue_service.errors import InvalidPayloadError
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime, open_runtime
from queue_service.store.db import API_ROLE, Database
from tests.integration.conftest import Spawn, WorkerFactory, make_settings
from tests.support.fake_minting import FakeMinting
from tests.support.fake_solana import FakeSolana
from tests.support.waiting import eventually

SECRET = "mint-test-secret-0123456789abcdef-0123456789"
MINTING_WALLET = b58encode(hashlib.sha256(b"platform minting wallet").digest())
CUSTOMER_WALLET = b58encode(hashlib.sha256(b"customer wallet").digest())


@pytest.fixture
def solana() -> Iterator[FakeSolana]:
    with FakeSolana(balance_sol=2.0) as server:
        yield server


@pytest.fixture
def minting() -> Iterator[FakeMinting]:
    with FakeMinting(SECRET) as server:
        yield server


def provider_env(solana: FakeSolana, minting: FakeMinting) -> dict[str, str]:
    """The environment of a worker process that mints against the fakes."""
    return {
        "SOLANA_RPC_URL": solana.url,
        "SOLANA_WALLET_ADDRESS": MINTING_WALLET,
        "MINTING_SERVICE_URL": minting.url,
        "INTERNAL_HMAC_SECRET": SECRET,
    }


@pytest.fixture
async def runtime(
    database_url: str, solana: FakeSolana, minting: FakeMinting
) -> AsyncIterator[Runtime]:
    """Overrides the engine's runtime: the mint job types, wired to the fakes."""
    settings = make_settings(
        database_url,
        solana_rpc_url=solana.url,
        solana_wallet_address=MINTING_WALLET,
        minting_service_url=minting.url,
        internal_hmac_secret=SECRET,
    )
    async with open_runtime(settings, database_url) as rt:
        yield rt


def mint_request(ticket: str = "tkt-1", **data: Any) -> EnqueueRequest:
    payload = {
        "ticket_id": ticket,
        "user_id": "user-7",
        "wallet_address": CUSTOMER_WALLET,
        "event_id": "evt-3",
        "metadata": {"name": "Row A seat 1", "attributes": [{"trait_type": "row", "value": "A"}]},
        "customer_email": "fan@example.com",
        **data,
    }
    return EnqueueRequest(type="ticket.mint", data=payload, tenant_id="t1")


async def wait_for(runtime: Runtime, job_id: UUID, status: JobStatus, timeout: float = 15) -> None:
    async def probe() -> bool:
        return (await runtime.manager.get(job_id)).status is status

    await eventually(probe, timeout=timeout, what=f"job {job_id} {status.value}")


async def wait_for_event(runtime: Runtime, job_id: UUID, event: str) -> None:
    async def probe() -> bool:
        return any(e.event == event for e in await runtime.store.job_events(job_id))

    await eventually(probe, what=f"a {event!r} event of job {job_id}")


async def history(runtime: Runtime, job_id: UUID) -> list[tuple[str, int]]:
    return [(e.event, e.attempt) for e in await runtime.store.job_events(job_id)]


async def due_now(runtime: Runtime, job_id: UUID) -> None:
    """Bring a delayed job's run_at forward instead of waiting out its backoff."""
    async with runtime.db.connection() as conn:
        await conn.execute("UPDATE jobs SET run_at = now() WHERE id = %(id)s", {"id": job_id})


async def follow_ups(runtime: Runtime) -> list[tuple[Any, ...]]:
    async with runtime.db.connection() as conn:
        cur = await conn.execute(
            "SELECT data, idempotency_key FROM jobs WHERE type = 'email.send' ORDER BY created_at"
        )
        return await cur.fetchall()


async def test_a_mint_succeeds_once_and_enqueues_the_nft_minted_email(
    runtime: Runtime, run_worker: WorkerFactory, minting: FakeMinting
) -> None:
    done = await runtime.manager.enqueue(mint_request())
    run_worker(queues=("money",))
    await wait_for(runtime, done.job_id, JobStatus.COMPLETED)

    assert minting.mint_count == {"tkt-1": 1}
    # No ledger row before this job: nothing to ask about, one mint call.
    assert minting.kinds("tkt-1") == ["mint"]
    assert minting.requests[0][2] == "mint:tkt-1:user-7"  # the job's derived key
    minted = minting.mints[("t1", "tkt-1")]
    job = await runtime.manager.get(done.job_id)
    assert job.result == {
        "ticket_id": "tkt-1",
        "mint_address": minted.mint_address,
        "signature": minted.signature,
    }
    assert await history(runtime, done.job_id) == [("completed", 1)]
    [(email, key)] = await follow_ups(runtime)
    assert key == "email:nft_minted:tkt-1"
    assert email["to"] == "fan@example.com" and email["template"] == "nft_minted"
    assert email["context"]["mint_address"] == minted.mint_address
    assert email["context"]["signature"] == minted.signature
    assert email["context"]["name"] == "Row A seat 1"
    record = await runtime.store.mint_get("t1", "tkt-1")
    assert record is not None
    assert (record.state, record.requests, record.mint_address) == (
        "minted",
        1,
        minted.mint_address,
    )
    [balance] = await runtime.store.wallet_balances()
    assert (balance.address, float(balance.balance_sol), balance.low) == (
        MINTING_WALLET,
        2.0,
        False,
    )


async def test_a_low_balance_snoozes_the_mint_records_the_signal_and_calls_no_minting_service(
    runtime: Runtime, run_worker: WorkerFactory, solana: FakeSolana, minting: FakeMinting
) -> None:
    solana.balance_sol = 0.004
    done = await runtime.manager.enqueue(mint_request())
    run_worker(queues=("money",))
    await wait_for_event(runtime, done.job_id, "snoozed")

    job = await runtime.manager.get(done.job_id)
    assert (job.status, job.attempts) == (JobStatus.DELAYED, 0)
    events = await runtime.store.job_events(done.job_id)
    assert [(e.event, e.attempt) for e in events] == [("snoozed", 1)]
    assert events[0].error is not None and "below the minimum 0.01 SOL" in events[0].error
    [signal] = await runtime.store.wallet_balances()
    assert signal.address == MINTING_WALLET and signal.low
    assert float(signal.balance_sol) == 0.004 and float(signal.minimum_sol) == 0.01
    assert minting.requests == []
    assert await runtime.store.mint_get("t1", "tkt-1") is None

    # Topped up: the next run mints (run_at brought forward, not waited for).
    solana.balance_sol = 1.5
    await due_now(runtime, done.job_id)
    await wait_for(runtime, done.job_id, JobStatus.COMPLETED)
    assert minting.mint_count == {"tkt-1": 1}
    assert await history(runtime, done.job_id) == [("snoozed", 1), ("completed", 1)]
    [restored] = await runtime.store.wallet_balances()
    assert float(restored.balance_sol) == 1.5 and not restored.low


async def test_a_refused_follow_up_email_does_not_undo_a_mint_already_made(
    runtime: Runtime, run_worker: WorkerFactory, minting: FakeMinting
) -> None:
    # The email's key is taken by another payload: its enqueue is refused.
    await runtime.manager.enqueue(
        EnqueueRequest(
            type="email.send",
            data={
                "to": "x@example.com",
                "template": "nft_minted",
                "context": {"ticket_id": "o", "event_id": "o"},
            },
            tenant_id="t1",
            idempotency_key="email:nft_minted:tkt-1",
        )
    )
    done = await runtime.manager.enqueue(mint_request())
    run_worker(queues=("money",))
    await wait_for(runtime, done.job_id, JobStatus.COMPLETED)

    job = await runtime.manager.get(done.job_id)
    assert job.result["email"].startswith("not enqueued")
    assert minting.mint_count == {"tkt-1": 1}
    record = await runtime.store.mint_get("t1", "tkt-1")
    assert record is not None and record.state == "minted"


async def test_a_bad_hmac_secret_is_refused_by_the_minting_service_and_dead_letters_the_job(
    runtime: Runtime, run_worker: WorkerFactory, minting: FakeMinting
) -> None:
    minting.secret = "the-minting-service-knows-another-secret-0123"
    done = await runtime.manager.enqueue(mint_request())
    run_worker(queues=("money",))
    await wait_for(runtime, done.job_id, JobStatus.FAILED)

    job = await runtime.manager.get(done.job_id)
    assert job.attempts == 1  # permanent: no retry
    assert job.last_error is not None and "authentication" in job.last_error
    assert minting.refused == 1 and minting.mints == {}
    [dead] = await runtime.store.list_dead_letters("t1", 10)
    assert dead.original_job_id == done.job_id
    assert await follow_ups(runtime) == []


async def test_a_minting_service_500_is_retried_with_the_same_key_after_asking_the_status(
    runtime: Runtime, run_worker: WorkerFactory, minting: FakeMinting
) -> None:
    minting.fail_mints = 1
    done = await runtime.manager.enqueue(mint_request())
    run_worker(queues=("money",))
    await wait_for_event(runtime, done.job_id, "retry_scheduled")
    await due_now(runtime, done.job_id)
    await wait_for(runtime, done.job_id, JobStatus.COMPLETED)

    assert minting.kinds("tkt-1") == ["mint", "status", "mint"]
    keys = {key for kind, _, key in minting.requests if kind == "mint"}
    assert keys == {"mint:tkt-1:user-7"}
    assert minting.mint_count == {"tkt-1": 1}
    assert await history(runtime, done.job_id) == [("retry_scheduled", 1), ("completed", 2)]


async def test_an_answer_lost_after_the_minting_service_accepted_is_found_by_status_not_reminted(
    runtime: Runtime, run_worker: WorkerFactory, minting: FakeMinting
) -> None:
    minting.after_accept = lambda: None
    minting.answer_accepted = False  # accepted, then the connection drops
    done = await runtime.manager.enqueue(mint_request())
    run_worker(queues=("money",))
    await wait_for_event(runtime, done.job_id, "retry_scheduled")
    minting.answer_accepted = True
    await due_now(runtime, done.job_id)
    await wait_for(runtime, done.job_id, JobStatus.COMPLETED)

    assert minting.kinds("tkt-1") == ["mint", "status"]
    assert minting.mint_count == {"tkt-1": 1}
    assert len(await follow_ups(runtime)) == 1


async def test_a_second_job_for_a_minted_ticket_completes_without_minting_again(
    runtime: Runtime, run_worker: WorkerFactory, minting: FakeMinting
) -> None:
    first = await runtime.manager.enqueue(mint_request())
    run_worker(queues=("money",))
    await wait_for(runtime, first.job_id, JobStatus.COMPLETED)
    other = await runtime.manager.enqueue(
        EnqueueRequest(
            type="nft.mint",
            data=mint_request().data,
            tenant_id="t1",
            idempotency_key="another-key-for-the-same-ticket",
        )
    )
    await wait_for(runtime, other.job_id, JobStatus.COMPLETED)

    assert (await runtime.manager.get(other.job_id)).result["already_minted"] is True

    elsewhere = b58encode(hashlib.sha256(b"someone else's wallet").digest())
    stolen = await runtime.manager.enqueue(
        EnqueueRequest(
            type="ticket.mint",
            data=mint_request(wallet_address=elsewhere).data,
            tenant_id="t1",
            idempotency_key="a-third-key",
        )
    )
    await wait_for(runtime, stolen.job_id, JobStatus.FAILED)
    job = await runtime.manager.get(stolen.job_id)
    assert job.attempts == 1 and job.last_error is not None and "conflict" in job.last_error

    assert minting.mint_count == {"tkt-1": 1}
    assert minting.kinds("tkt-1") == ["mint"]
    assert len(await follow_ups(runtime)) == 1


async def test_the_same_mint_enqueued_twice_is_one_job_by_its_derived_key(
    runtime: Runtime,
) -> None:
    first = await runtime.manager.enqueue(mint_request())
    second = await runtime.manager.enqueue(mint_request())
    assert second.job_id == first.job_id and not second.created
    job = await runtime.manager.get(first.job_id)
    assert (job.idempotency_key, job.queue, job.priority, job.max_attempts) == (
        "mint:tkt-1:user-7",
        "money",
        3,
        3,
    )


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("wallet_address", "0xNotASolanaAddress", "wallet_address"),
        ("wallet_address", b58encode(b"\x01" * 31), "wallet_address"),
        ("ticket_id", "../../admin", "ticket_id"),
        ("favourite_colour", "teal", "favourite_colour"),
        ("customer_email", "fan@localhost", "customer_email"),
    ],
)
async def test_an_invalid_mint_payload_is_refused_at_enqueue_and_nothing_is_written(
    runtime: Runtime, field: str, value: str, says: str
) -> None:
    with pytest.raises(InvalidPayloadError, match=says):
        await runtime.manager.enqueue(mint_request(**{field: value}))
    async with runtime.db.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM jobs")
        assert await cur.fetchone() == (0,)


@pytest.mark.slow
async def test_a_configured_solana_private_key_stops_the_service_at_start_naming_it(
    spawn: Spawn,
) -> None:
    proc = spawn("worker", SOLANA_PRIVATE_KEY="4wBqpZM9xaSheZzJSMawUKKwhdpChKbZ5eu5ky4Vigw9")
    assert proc.wait(30) != 0
    logs = proc.logs()
    assert "SOLANA_PRIVATE_KEY is set" in logs
    assert "4wBqpZM9" not in logs  # the key itself is never echoed


@pytest.mark.slow
async def test_a_worker_killed_after_the_minting_service_accepted_is_rescued_and_mints_once(
    runtime: Runtime, spawn: Spawn, solana: FakeSolana, minting: FakeMinting
) -> None:
    env = provider_env(solana, minting)
    doomed = spawn("worker", "--queues", "money", QUEUE_SERVICE_WORKER_ID="doomed", **env)
    # The service records the mint, then the worker dies before any answer.
    minting.after_accept = lambda: os.kill(doomed.pid, signal.SIGKILL)
    minting.answer_accepted = False
    done = await runtime.manager.enqueue(mint_request())
    assert await asyncio.to_thread(doomed.wait, 30) == -signal.SIGKILL

    assert minting.mint_count == {"tkt-1": 1}
    job = await runtime.manager.get(done.job_id)
    assert (job.status, job.attempts) == (JobStatus.ACTIVE, 1)
    record = await runtime.store.mint_get("t1", "tkt-1")
    assert record is not None and (record.state, record.requests) == ("requested", 1)

    # Its 120 s lease runs out at once, and the rescuer puts the job back.
    async with runtime.db.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %(id)s",
            {"id": done.job_id},
        )
    assert (await runtime.store.rescue_expired()).rescued == [done.job_id]
    minting.after_accept = None
    minting.answer_accepted = True
    spawn("worker", "--queues", "money", QUEUE_SERVICE_WORKER_ID="survivor", **env)
    await wait_for(runtime, done.job_id, JobStatus.COMPLETED, timeout=30)

    assert minting.kinds("tkt-1") == ["mint", "status"]  # asked, not minted again
    assert minting.mint_count == {"tkt-1": 1}
    assert await history(runtime, done.job_id) == [("rescued", 1), ("completed", 2)]
    minted = await runtime.store.mint_get("t1", "tkt-1")
    assert minted is not None and (minted.state, minted.requests) == ("minted", 1)
    assert minted.mint_address == minting.mints[("t1", "tkt-1")].mint_address
    assert len(await follow_ups(runtime)) == 1


async def test_the_api_role_reads_only_its_tenants_mints_and_writes_none(
    runtime: Runtime, run_worker: WorkerFactory
) -> None:
    done = await runtime.manager.enqueue(mint_request())
    run_worker(queues=("money",))
    await wait_for(runtime, done.job_id, JobStatus.COMPLETED)

    api = Database(runtime.conninfo, role=API_ROLE, min_size=1, max_size=2)
    await api.open()
    try:
        for tenant, seen in (("t1", 1), ("t2", 0)):
            async with api.tenant_transaction(tenant) as bound, bound.connection() as conn:
                cur = await conn.execute("SELECT count(*) FROM mints")
                assert await cur.fetchone() == (seen,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with api.tenant_transaction("t1") as bound, bound.connection() as conn:
                await conn.execute("UPDATE mints SET state = 'failed'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with api.connection() as conn:
                await conn.execute("DELETE FROM wallet_balances")
    finally:
        await api.close()
