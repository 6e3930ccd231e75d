"""``[store]``: where the store is (a SQLite file, or a PostgreSQL database shared by several
nodes: docs/deployment.md) and how long a claim on queued work lasts."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from relay.config.table import Table
from store.backend import POSTGRES_SCHEMES
from tracker.workers import LEASE_SECONDS, MIN_LEASE_SECONDS


@dataclass(frozen=True)
class StoreConfig:
    url: str = field(repr=False)  # may hold a password (``env:NAME`` resolved)
    path: Path | None  # the SQLite file; None for PostgreSQL
    # How long a worker's claim holds an item unrenewed: how long a dead node's work waits
    # before another node takes it (tracker/workers.py).
    lease_seconds: float = LEASE_SECONDS

    @property
    def where(self) -> Path | str:
        """What ``store.store.Store.open`` takes: the SQLite file or the PostgreSQL URL."""
        return self.path if self.path is not None else self.url



def parse_store(t: Table, base: Path) -> StoreConfig:
    url = t.text("url", "sqlite:///./data/clickrelay.db", secret=True)
    lease_seconds = t.positive_number("lease_seconds", LEASE_SECONDS)
    if lease_seconds < MIN_LEASE_SECONDS:
        # Leases are renewed every third of one: shorter, a busy node's renewal could
        # come too late and another node would take work that is still being done.
        raise t.error("lease_seconds", f"must be at least {MIN_LEASE_SECONDS:g}")
    t.done()
    try:
        return replace(store_config(url, base), lease_seconds=lease_seconds)
    except ValueError as exc:
        raise t.error("url", str(exc)) from None


def store_config(url: str, base: Path) -> StoreConfig:
    """A store URL read: ``sqlite:///PATH`` (a relative PATH from ``base``, an absolute one
    as ``sqlite:////abs/path``) or a PostgreSQL URL. A URL that is neither, or a PostgreSQL
    URL without its host or database, raises ValueError saying what a URL looks like."""
    if url.startswith(POSTGRES_SCHEMES):
        parts = urlsplit(url)
        if (not parts.hostname and "host=" not in parts.query) or not parts.path.strip("/"):
            raise ValueError("a PostgreSQL URL names its host and database:"
                             " postgresql://user:password@host:5432/database")
        return StoreConfig(url=url, path=None)
    if not url.startswith("sqlite:///"):
        raise ValueError("must be sqlite:///PATH or postgresql://user:password@host/db")
    rest = url[len("sqlite:///") :]
    path = Path(rest) if rest.startswith("/") else base / rest
    return StoreConfig(url=url, path=path)
