"""The PostgreSQL database under the store, for several clickrelay nodes sharing one
database: an asyncpg pool, and the transactions store/backend.py's ``Database`` promises.

Statements arrive written for both engines, with SQLite's ``?`` placeholders
(store/postgres/placeholders.py), and their parameters are bound here, each text made
storable first (store/postgres/storable.py: no NUL, no lone surrogate). Work functions run
on the event loop over one pooled connection; nothing here uses a thread. A committed
transaction is durable when its commit returns (the server's ``synchronous_commit``, on by
default)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from asyncpg.pool import Pool

from store.backend import Dialect, Row, Work
from store.dialect import POSTGRESQL
from store.group_commit import GroupCommit
from store.postgres.migrate import (
    CONNECT_ERRORS,
    PgOpenError,
    connect,
    describe,
    migrate,
    one_line,
)
from store.postgres.placeholders import to_postgres
from store.postgres.storable import storable

T = TypeVar("T")

CHANNEL_PREFIX = "clickrelay_"  # the NOTIFY channels' names (store.backend.Tx.notify)

# The command tags that report rows changed ("INSERT 0 3", "UPDATE 2", …); a SELECT's count
# is of rows read.
_CHANGING = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY"})


def rows_changed(status: str) -> int:
    """How many rows a statement changed, from asyncpg's command tag."""
    words = status.split()
    if words and words[0] in _CHANGING and words[-1].isdigit():
        return int(words[-1])
    return 0


_WRITES = frozenset({"INSERT", "UPDATE", "DELETE"})


class PgTx:
    """The statements of one transaction on one connection (store.backend.Tx)."""

    def __init__(self, conn: asyncpg.Connection):
        self._conn = conn
        self.changed = False  # a statement is known to have changed rows

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        count = rows_changed(await self._conn.execute(to_postgres(sql), *storable(params)))
        if count:
            self.changed = True
        return count

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        args = [tuple(storable(row)) for row in rows]
        if args:
            await self._conn.executemany(to_postgres(sql), args)
            self.changed = True  # the store's executemany statements are all writes

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        rows: list[Row] = await self._conn.fetch(to_postgres(sql), *storable(params))
        if rows and sql.lstrip()[:6].upper() in _WRITES:  # UPDATE … RETURNING: a claim
            self.changed = True
        return rows

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        row: Row | None = await self._conn.fetchrow(to_postgres(sql), *storable(params))
        return row

    async def notify(self, channel: str) -> None:
        """Tell every node listening on ``channel`` (``PgDatabase.listen``), once this
        transaction commits."""
        await self._conn.execute("SELECT pg_notify($1, '')", CHANNEL_PREFIX + channel)

    def savepoint(self) -> AbstractAsyncContextManager[Any]:
        """A savepoint inside the transaction: an error in the block undoes the block
        alone, and is raised on."""
        manager: AbstractAsyncContextManager[Any] = self._conn.transaction()
        return manager

    async def wrote(self) -> bool:
        """Whether the transaction wrote anything, before its commit. The statements say
        so most of the time (rows changed, rows returned by a write, an ``executemany``);
        where they do not (a claim that returned nothing, a row only locked) the server
        does, in one more trip: a transaction gets an id at its first write, and only then
        does its commit write and flush the log."""
        if self.changed:
            return True
        return bool(await self._conn.fetchval(
            "SELECT pg_current_xact_id_if_assigned() IS NOT NULL"))


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a pooled connection needs when it goes back to the pool, beyond asyncpg's own
    rollback of an open transaction: nothing. asyncpg's default sends one more statement
    per use (releasing session advisory locks, closing cursors, UNLISTEN, RESET ALL), a
    trip to the server after every transaction; the store leaves no such state on a pooled
    connection (its locks end with their transaction; LISTEN and the migrations' lock
    have connections of their own)."""


class PgDatabase:
    """A store's database on PostgreSQL (store.backend.Database)."""

    # Every node must read every body: bodies stay in the database, never in files.
    files_dir: Path | None = None

    def __init__(self, pool: Pool, url: str):
        self._pool = pool
        self._url = url
        self._where = describe(url)
        self.dialect: Dialect = POSTGRESQL
        self.commits = 0  # write transactions that changed rows, for the metrics
        self._groups = GroupCommit(self._run_group)

    @classmethod
    async def open(cls, url: str, *, max_connections: int = 10,
                   sync_commits: bool = True) -> PgDatabase:
        """Connect to ``url`` (``postgresql://user:password@host:port/database``; a query
        parameter such as ``?search_path=schema`` is a setting of every connection),
        migrate it, and open a pool of up to ``max_connections``. A server that cannot be
        reached, or a database this clickrelay cannot use, raises PgOpenError in one line.
        ``sync_commits=False``: see ``Store.open``."""
        conn = await connect(url)
        try:
            await migrate(conn, url)
        finally:
            await conn.close()
        # A later synchronous commit flushes the log up to its own record, and so every
        # commit before it: what an asynchronous commit risks is only its own last moments.
        settings = {} if sync_commits else {"synchronous_commit": "off"}
        try:
            # Each connection prepares a statement once and keeps it: room for all of the
            # store's few hundred, so that none is prepared again on a busy node.
            pool = await asyncpg.create_pool(url, min_size=1, max_size=max_connections,
                                             statement_cache_size=512, reset=_keep_session,
                                             server_settings=settings)
        except CONNECT_ERRORS as exc:
            raise PgOpenError(f"cannot connect to PostgreSQL at {describe(url)}: "
                              f"{one_line(exc)}") from None
        return cls(pool, url)

    async def close(self) -> None:
        """Close the pool once the writes asked for so far are committed."""
        await self._groups.drain()
        await self._pool.close()

    def __repr__(self) -> str:
        return f"PgDatabase({self._where})"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTx]:
        """A write transaction on a pooled connection, committed when the block ends without
        error and rolled back when it raises (or is cancelled)."""
        async with self._pool.acquire() as conn:
            tx = PgTx(conn)
            async with conn.transaction():
                yield tx
                wrote = await tx.wrote()
            if wrote:
                self.commits += 1

    async def write(self, work: Work[T]) -> T:
        """A work function in a transaction of its own, committed when it returns."""
        async with self.transaction() as tx:
            return await work(tx)

    async def write_statement(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One statement as a transaction of its own (PostgreSQL commits a lone statement
        atomically): one trip; how many rows it changed."""
        count = rows_changed(await self._pool.execute(to_postgres(sql), *storable(params)))
        if count:
            self.commits += 1
        return count

    async def write_grouped(self, work: Work[T]) -> T:
        """A write that shares its transaction, and so its commit, with the writes asked for
        while the one before was being committed (group commit, as the clicks have: many
        concurrent submissions or delivery records, one commit). Each write runs in a
        savepoint of its own: one that raises is undone alone and its error is raised
        here, and the others are committed. Committed when this returns.

        A write whose caller was cancelled before its group began is left out; once its
        group has begun it is committed or not with the group, as with ``transaction``."""
        return await self._groups.submit(work)

    async def _run_group(self, works: list[Work[Any]]) -> list[tuple[bool, Any]]:
        """Each write in a savepoint of one transaction: (True, its result), or (False, the
        exception that undid it). A write alone in its group needs no savepoint: its
        transaction undoes it alone, and it saves two trips to the server (SAVEPOINT and
        RELEASE), which is what a write costs beyond its own statements when writes come
        one at a time."""
        if len(works) == 1:
            try:
                return [(True, await self.write(works[0]))]
            except Exception as exc:
                return [(False, exc)]
        outcomes: list[tuple[bool, Any]] = []
        async with self.transaction() as tx:
            for work in works:
                try:
                    async with tx.savepoint():
                        outcomes.append((True, await work(tx)))
                except Exception as exc:
                    outcomes.append((False, exc))
        return outcomes

    async def read(self, work: Work[T]) -> T:
        """Several reads in one consistent snapshot: a REPEATABLE READ, READ ONLY
        transaction, which sees the database as it was at its first statement."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                  readonly=True):
            return await work(PgTx(conn))

    async def listen(self, channel: str, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever a transaction that notified ``channel`` commits, on this
        node or another (new mail spooled, webhook deliveries in the outbox), so that an
        idle node's worker claims at once instead of at its next poll. Runs until
        cancelled, on a connection of its own; a lost connection raises, and the
        supervised task that runs this starts it again. ``wake`` is also called once
        listening begins: what was notified while no one listened is not missed."""
        conn = await connect(self._url)
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def closed(_: object) -> None:
            if not lost.done():
                lost.set_exception(ConnectionError(f"lost the connection to {self._where}"
                                                   f" listening on {channel}"))

        try:
            conn.add_termination_listener(closed)
            await conn.add_listener(CHANNEL_PREFIX + channel, lambda *_: wake())
            wake()
            await lost
        finally:
            lost.cancel()  # the termination below is ours: nothing to report
            conn.terminate()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        rows: list[Row] = await self._pool.fetch(to_postgres(sql), *storable(params))
        return rows

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        row: Row | None = await self._pool.fetchrow(to_postgres(sql), *storable(params))
        return row
