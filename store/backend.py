"""What the store's domain modules (store/mail.py and the rest) ask of a database, so that
the same code runs on both backends: SQLite (store/db.py, the embedded default) and
PostgreSQL (store/postgres/, for several nodes sharing one database; docs/deployment.md).

A domain method either runs one statement (``fetchall``, ``fetchone``, ``write_statement``)
or hands the database a *work function*: ``async def work(tx: Tx) -> T`` that runs its
statements through ``tx`` and awaits nothing else. On SQLite such a function runs whole on
the connection's thread in one trip (``run_sync``: its awaits never suspend), so that the
write lock is held only while SQLite works; on PostgreSQL it runs on the event loop over
an asyncpg connection.

SQL is written once, with ``?`` placeholders (``?1`` where a parameter is used twice),
in the subset both engines read; what differs is asked of ``Dialect``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

POSTGRES_SCHEMES = ("postgresql://", "postgres://")  # a store URL that names PostgreSQL


class Row(Protocol):
    """A result row: by column name or by position (aiosqlite.Row, asyncpg.Record)."""

    def __getitem__(self, key: int | str, /) -> Any: ...
    def __iter__(self) -> Any: ...
    def __len__(self) -> int: ...
    def keys(self) -> Iterable[str]: ...


class Tx(Protocol):
    """Statements inside one transaction (or one snapshot, for reads)."""

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run a statement; how many rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None: ...

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None: ...

    async def notify(self, channel: str) -> None:
        """Wake the other nodes' workers listening on ``channel`` once the transaction
        commits (``Database.listen``); nothing on a database with one node."""
        ...


Work = Callable[[Tx], Awaitable[T]]


class Dialect(Protocol):
    """The few places where the two engines' SQL differs."""

    @property
    def name(self) -> str:
        """"sqlite" or "postgresql"."""
        ...

    @property
    def skip_locked(self) -> str:
        """Appended to a claim's inner SELECT: "" or " FOR UPDATE SKIP LOCKED"."""
        ...

    def json_values(self, param: str = "?", sql_type: str = "TEXT") -> str:
        """A SELECT of the elements of the JSON array ``param`` as ``sql_type`` (INTEGER or
        TEXT), for ``x IN (...)``."""
        ...

    def json_rows(self, param: str = "?") -> str:
        """A table ``j`` whose ``value`` column is each element of the JSON array of arrays
        ``param``; read the elements with ``json_at``."""
        ...

    def json_at(self, index: int, sql_type: str) -> str:
        """Element ``index`` of ``j.value`` (see ``json_rows``) as ``sql_type``
        (INTEGER or TEXT)."""
        ...

    def utc_day(self, column: str) -> str:
        """The UTC day (YYYY-MM-DD) of the µs timestamp ``column``."""
        ...

    def serialize(self, name: str) -> str:
        """A statement that, run first in a transaction, makes the transactions that run it
        with the same ``name`` take turns (until commit); "" where they already do."""
        ...

    def indexed_by(self, index: str) -> str:
        """`` INDEXED BY index`` where the engine takes the hint, else nothing."""
        ...

    def not_indexed(self) -> str:
        """`` NOT INDEXED`` where the engine takes the hint (after a table name: its rows
        found by their primary key, or read in order, never through an index), else
        nothing."""
        ...


class Database(Protocol):
    """A store's database: its transactions, its reads and what it counts."""

    dialect: Dialect
    commits: int  # write transactions that changed rows, for the metrics
    # Where large shared bodies are kept as files, beside the database; None where every
    # body stays in the database (PostgreSQL: every node must read every body).
    files_dir: Path | None

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction, committed (durably) when the block ends without error."""
        ...

    async def write(self, work: Work[T]) -> T:
        """A work function in a transaction of its own, committed when it returns."""
        ...

    async def write_grouped(self, work: Work[T]) -> T:
        """A work function that shares its transaction, and so its commit, with the writes
        asked for while the one before was being committed (group commit); each runs in a
        savepoint of its own, so one that raises is undone alone and raises here."""
        ...

    async def write_statement(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One statement as a transaction of its own; how many rows it changed."""
        ...

    async def listen(self, channel: str, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever a transaction that notified ``channel`` commits, on any
        node; runs until cancelled (a supervised task). Only a shared database has it."""
        ...

    async def read(self, work: Work[T]) -> T:
        """Several reads in one consistent snapshot."""
        ...

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None: ...

    async def close(self) -> None: ...


def run_sync(work: Work[T], tx: Tx) -> T:
    """Run a work function to its end without an event loop: the SQLite backend's ``Tx``
    answers every await at once, so the coroutine finishes in one step."""
    coro = work(tx)
    if not isinstance(coro, Coroutine):
        raise TypeError(f"a store work function must be a coroutine function: {work!r}")
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError(f"a store work function awaited something besides its transaction: {work!r}")

