"""Enqueue from synchronous code (a Django or Flask view, a script) on your
own psycopg connection, inside your own transaction::

    producer = SyncProducer.from_settings()
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("UPDATE orders SET status = 'paid' WHERE id = %s", (order_id,))
        producer.enqueue(conn, EnqueueRequest(type="email.send", data={...}, tenant_id=t))
    # the job exists if and only if the order update committed

The connection's role must be allowed to insert jobs (the table owner, or a
session that ran ``SET ROLE queue_service_engine``).
"""

from __future__ import annotations

from collections.abc import Sequence

from queue_service.core.jobs import EnqueueRequest
from queue_service.processors.registry import Registry, configured_registry
from queue_service.runtime.manager import build_job
from queue_service.settings import Settings, load_settings
from queue_service.store.enqueue_plan import Enqueued
from queue_service.store.sync_writer import SyncConn, enqueue_many_sync


class SyncProducer:
    """Validates requests against the job types and inserts them on your connection."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> SyncProducer:
        """Job types from entry points and QUEUE_SERVICE_PROCESSORS, as a worker sees them."""
        settings = settings or load_settings()
        return cls(configured_registry(settings))

    def enqueue(self, conn: SyncConn, request: EnqueueRequest) -> Enqueued:
        return self.enqueue_many(conn, [request])[0]

    def enqueue_many(self, conn: SyncConn, requests: Sequence[EnqueueRequest]) -> list[Enqueued]:
        """All or none: every request is validated before anything is written."""
        jobs = [build_job(self.registry, r) for r in requests]
        return enqueue_many_sync(conn, jobs)
