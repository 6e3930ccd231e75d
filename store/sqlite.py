"""The SQLite store: every domain's methods over one database file."""

from __future__ import annotations

from pathlib import Path

from store.db import Database
from store.mail import MailStore


class SqliteStore(MailStore):
    def __init__(self, db: Database) -> None:
        self.db = db

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        return cls(await Database.open(path))

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> None:
        await self.db.fetchone("SELECT 1")
