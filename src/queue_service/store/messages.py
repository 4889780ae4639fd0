"""Statements of the email and SMS sent-ledger: once per message key, even
when the job that sent it is retried or rescued (SPEC §4)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from queue_service.store.db import Conn, Database
from queue_service.store.queries import Q

Channel = Literal["email", "sms"]


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message a provider accepted."""

    channel: str
    job_id: UUID
    provider: str
    provider_ref: str
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A held job's message key, and its ledger row if it was already sent."""

    message_key: str
    sent: SentMessage | None


class MessageStore:
    db: Database

    async def message_ledger(
        self, tenant_id: str, job_id: UUID, channel: Channel, conn: Conn | None = None
    ) -> LedgerEntry | None:
        """The job's message key and what was sent under it; None when the job
        is no longer in ``jobs`` (it finished or was cancelled meanwhile)."""
        async with self.db.connection(conn) as c:
            cur = await c.execute(
                Q["message_ledger_lookup"],
                {"tenant_id": tenant_id, "job_id": job_id, "channel": channel},
            )
            row = await cur.fetchone()
        if row is None:
            return None
        key, sent_channel, sent_job, provider, ref, sent_at = row
        sent = (
            SentMessage(sent_channel, sent_job, provider, ref, sent_at)
            if sent_channel is not None
            else None
        )
        return LedgerEntry(key, sent)

    async def record_sent_message(
        self,
        tenant_id: str,
        message_key: str,
        channel: Channel,
        job_id: UUID,
        provider: str,
        provider_ref: str,
        conn: Conn | None = None,
    ) -> bool:
        """Record an accepted message (commits at once without ``conn``);
        False if the key was already recorded."""
        async with self.db.connection(conn) as c:
            cur = await c.execute(
                Q["message_ledger_record"],
                {
                    "tenant_id": tenant_id,
                    "message_key": message_key,
                    "channel": channel,
                    "job_id": job_id,
                    "provider": provider,
                    "provider_ref": provider_ref,
                },
            )
            return await cur.fetchone() is not None

    async def purge_sent_messages(self, older_than_days: int, limit: int = 1000) -> int:
        """Forget up to ``limit`` ledger rows older than ``older_than_days``."""
        async with self.db.connection() as c:
            cur = await c.execute(
                Q["message_ledger_purge"], {"days": older_than_days, "limit": limit}
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0
