"""The store: every domain's methods over one database, SQLite's file (the default) or a
PostgreSQL database shared by several nodes (docs/deployment.md)."""

from __future__ import annotations

from pathlib import Path

from store.backend import POSTGRES_SCHEMES, Database
from store.clicks import ClickStore
from store.config_items import ConfigItemStore
from store.context import ContextStore
from store.dashboard import DashboardStore
from store.db import SqliteDatabase
from store.events import EventStore
from store.idempotency import IdempotencyStore
from store.mail import MailStore
from store.queues import QueueStore
from store.reports import ReportStore
from store.retention import RetentionStore
from store.route_settings import RouteSettingStore
from store.webhooks import WebhookStore


class Store(
    MailStore, IdempotencyStore, EventStore, ContextStore, WebhookStore, ClickStore,
    ReportStore, QueueStore, RetentionStore, ConfigItemStore, DashboardStore, RouteSettingStore,
):
    def __init__(self, db: Database, where: Path | str) -> None:
        self.db = db
        self.where = where  # what it was opened with: another Store.open(where) shares it

    @classmethod
    async def open(cls, where: Path | str, *, sync_commits: bool = True) -> Store:
        """The store at ``where``: a SQLite file's path, or a PostgreSQL URL.

        ``sync_commits=False`` is for a process whose every write can be made again if it
        is lost, promotion's (its events are made again from the observations, which stay
        pending until then): its commits do not wait for the disk. The next synced commit of
        any other writer (on SQLite the log's fsync, on PostgreSQL the log's flush up to its
        own record) makes them durable with it, and nothing acts on an event before such a
        commit: the webhook dispatcher claims a delivery in one. A power cut can thus undo
        only promotions nothing has acted on yet, and those are made again."""
        url = where if isinstance(where, str) else ""
        if url.startswith(POSTGRES_SCHEMES):
            from store.postgres.db import PgDatabase  # asyncpg only where it is used

            return cls(await PgDatabase.open(url, sync_commits=sync_commits), url)
        return cls(await SqliteDatabase.open(Path(where), sync_commits=sync_commits), where)

    @property
    def shared(self) -> bool:
        """Whether other nodes may use this database at the same time (PostgreSQL): then
        nothing is released at start for being claimed, since the claim may be a live
        node's; a dead node's claims lapse with their leases."""
        return self.db.dialect.name != "sqlite"

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> None:
        await self.db.fetchone("SELECT 1")
