"""The only place with SQL: named statements, the store, migrations."""

from __future__ import annotations

from queue_service.store.admin import AdminStore
from queue_service.store.alerts import AlertStore
from queue_service.store.auth import NonceRepository
from queue_service.store.db import Conn, Database
from queue_service.store.fair import FairStore
from queue_service.store.jobs import JobStore
from queue_service.store.messages import MessageStore
from queue_service.store.metrics import MetricsStore
from queue_service.store.mints import MintStore
from queue_service.store.money import MoneyStore
from queue_service.store.outbound import OutboundStore
from queue_service.store.reports import ReportStore
from queue_service.store.retention import RetentionStore
from queue_service.store.schedules import ScheduleStore
from queue_service.store.webhooks import WebhookStore


class Store(
    JobStore,
    FairStore,
    AdminStore,
    NonceRepository,
    ReportStore,
    MessageStore,
    WebhookStore,
    MintStore,
    MoneyStore,
    OutboundStore,
    ScheduleStore,
    MetricsStore,
    AlertStore,
    RetentionStore,
):
    """Every statement queue-service runs, one method each."""

    def __init__(self, db: Database) -> None:
        self.db = db


__all__ = ["Conn", "Database", "Store"]
