"""The SQLite store: every domain's methods over one database file."""

from __future__ import annotations

from pathlib import Path

from store.clicks import ClickStore
from store.config_items import ConfigItemStore
from store.context import ContextStore
from store.dashboard import DashboardStore
from store.db import Database
from store.events import EventStore
from store.idempotency import IdempotencyStore
from store.mail import MailStore
from store.queues import QueueStore
from store.reports import ReportStore
from store.retention import RetentionStore
from store.webhooks import WebhookStore


class SqliteStore(
    MailStore, IdempotencyStore, EventStore, ContextStore, WebhookStore, ClickStore,
    ReportStore, QueueStore, RetentionStore, ConfigItemStore, DashboardStore,
):
    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        return cls(await Database.open(path))

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> None:
        await self.db.fetchone("SELECT 1")
