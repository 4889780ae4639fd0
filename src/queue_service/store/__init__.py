"""The only place with SQL: named statements, the store, migrations."""

from __future__ import annotations

from queue_service.store.admin import AdminStore
from queue_service.store.auth import NonceRepository
from queue_service.store.db import Conn, Database
from queue_service.store.jobs import JobStore
from queue_service.store.reports import ReportStore


class Store(JobStore, AdminStore, NonceRepository, ReportStore):
    """Every statement queue-service runs, one method each."""

    def __init__(self, db: Database) -> None:
        self.db = db


__all__ = ["Conn", "Database", "Store"]
