"""kill -9 of a worker process after the SMTP server accepted the message and
the sent-ledger row committed, before the job completed: after the rescue,
exactly one message at the SMTP server. The kill lands at that point every
time: the test holds the job's row lock, so the completion waits for it while
the ledger insert (another table) commits.

The window this cannot cover (a crash between the server's 250 and the ledger
commit) resends with the same Message-ID: docs/providers/email.md."""

from __future__ import annotations

import asyncio
import signal
import threading
from email.message import EmailMessage

import psycopg
import pytest

from queue_service.core.jobs import JobStatus
from queue_service.runtime.service import Runtime
from tests.integration.conftest import Spawn, WorkerFactory
from tests.integration.messages.conftest import (
    SENDER,
    email_job,
    sent_once_then_rescued,
)
from tests.support.smtp_server import SmtpServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


async def test_a_worker_killed_after_the_smtp_accept_sends_the_email_exactly_once(
    runtime: Runtime,
    run_worker: WorkerFactory,
    spawn: Spawn,
    smtp: SmtpServer,
    database_url: str,
) -> None:
    accepted = threading.Event()
    proceed = threading.Event()

    def hold_the_reply(_: EmailMessage) -> None:
        # The server stored the message; its 250 waits until the test has
        # locked the job's row (the worker is past its claim by now).
        accepted.set()
        proceed.wait(timeout=30)

    smtp.handler.after_accept = hold_the_reply
    done = await runtime.manager.enqueue(email_job(to="jane.doe@example.com", key="crash"))
    doomed = spawn(
        "worker",
        "--queues",
        "communication",
        QUEUE_SERVICE_WORKER_ID="doomed",
        SMTP_FROM=SENDER,
        **smtp.env(),
    )

    async def server_accepted() -> bool:
        return accepted.is_set()

    await eventually(server_accepted, timeout=20, what="the SMTP server to accept the message")
    async with await psycopg.AsyncConnection.connect(database_url) as lock:
        await lock.execute("SELECT 1 FROM jobs WHERE id = %(id)s FOR UPDATE", {"id": done.job_id})
        proceed.set()

        me = (await (await lock.execute("SELECT pg_backend_pid()")).fetchone() or [0])[0]

        async def sent_and_completion_waiting() -> bool:
            entry = await runtime.store.message_ledger("t1", done.job_id, "email")
            cur = await lock.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE %(me)s = ANY(pg_blocking_pids(pid))",
                {"me": me},
            )
            waiting = (await cur.fetchone() or [0])[0]
            return entry is not None and entry.sent is not None and waiting > 0

        await eventually(sent_and_completion_waiting, what="the ledger row, then the completion")
        doomed.signal(signal.SIGKILL)
        assert await asyncio.to_thread(doomed.wait, 10) == -signal.SIGKILL
        # A statement already sent still runs when its client dies; on a real
        # crash the connection goes too. Close the dead worker's waiting ones.
        await lock.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE %(me)s = ANY(pg_blocking_pids(pid))",
            {"me": me},
        )
        await lock.rollback()

    assert (await runtime.manager.get(done.job_id)).status is JobStatus.ACTIVE
    async with runtime.db.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %(id)s",
            {"id": done.job_id},
        )
    assert (await runtime.store.rescue_expired()).rescued == [done.job_id]
    smtp.handler.after_accept = None
    run_worker(queues=("communication",))
    await sent_once_then_rescued(runtime, smtp, done.job_id)
    # The worker's own JSON logs (the real redaction pipeline) never show the address.
    logs = doomed.logs()
    assert "email" in logs and "jane.doe@example.com" not in logs
