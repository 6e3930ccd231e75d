"""The SQLite database under the store: connections, migrations and transactions.

One writer connection behind an asyncio lock (SQLite has one writer at a time anyway)
and one reader connection, in WAL mode with ``synchronous = FULL`` so that a committed
transaction survives a power cut: the relay answers 250 and the tracker answers 302
only after a commit (docs/mail.md, docs/redirect.md). The clicks' observations are
written by a third connection, in the observation writer's process
(store/writer/process.py); SQLite's locks and ``busy_timeout`` keep the two processes'
writes apart."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from store.backend import Dialect, Row, Tx, Work, run_sync
from store.clock import now_us
from store.dialect import SQLITE
from store.group_commit import GroupCommit
from store.pragmas import COMMITS_SYNCED_BY_THE_NEXT_WRITER, NO_BUSY_HANDLER, PRAGMAS, begin

T = TypeVar("T")

class SqliteDatabase:
    """``store.backend.Database`` over one SQLite file."""

    dialect: Dialect = SQLITE

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self.path = path
        self.files_dir: Path | None = path.parent
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._groups = GroupCommit(self._run_group)
        self.commits = 0  # write transactions that changed rows (each an fsync), for the metrics

    @classmethod
    async def open(cls, path: Path, *, sync_commits: bool = True) -> SqliteDatabase:
        """The database at ``path``, migrated. ``sync_commits=False``: see ``Store.open``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _connect(path)
        try:
            if not sync_commits:
                await writer.execute(COMMITS_SYNCED_BY_THE_NEXT_WRITER)
            await _migrate(writer)
            # From here every write on this connection opens with ``begin``, which waits
            # for the write lock itself, in finer steps than SQLite's busy handler.
            await writer.execute(NO_BUSY_HANDLER)
            reader = await _connect(path)
        except BaseException:
            await writer.close()
            raise
        return cls(path, writer, reader)

    async def close(self) -> None:
        async with self._write_lock:
            await self._reader.close()
            await self._writer.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A write transaction, committed (and on disk) when the block ends without error."""
        async with self._write_lock:
            changes = self._writer.total_changes
            try:
                # Inside the try: a task cancelled while BEGIN waits on aiosqlite's thread
                # still has it run there, and the rollback, queued behind it, undoes it.
                await _in_thread(self._writer, _just, begin)
                yield _AioTx(self._writer)
            except BaseException:
                await self._writer.rollback()
                raise
            await self._writer.commit()
            self._count(changes)

    async def write_statement(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement as a transaction of its own, on disk when this returns: one
        trip to the writer's thread, for hot paths that write one multi-row INSERT."""
        values = tuple(params)
        async with self._write_lock:
            changes = self._writer.total_changes
            count: int = await _in_thread(self._writer, _in_transaction,
                                          lambda raw: raw.execute(sql, values).rowcount)
            self._count(changes)
            return count

    async def write(self, work: Work[T]) -> T:
        """A write transaction run whole on the writer's thread: BEGIN, ``work``, COMMIT
        in one trip. The database's write lock (shared with the observation writer's
        process) is then held only while SQLite works, never while the event loop is busy
        with other tasks between the steps of a transaction: for hot paths that write
        while clicks are being committed."""
        async with self._write_lock:
            changes = self._writer.total_changes
            result = await _in_thread(self._writer, _in_transaction, _synchronously(work))
            self._count(changes)
            return result

    async def write_grouped(self, work: Work[T]) -> T:
        """A write that shares its transaction, and so its commit and its fsync, with the
        writes asked for while the one before was being committed (group commit, as the
        clicks have: many concurrent submissions or delivery records, one fsync). Each
        write runs in a savepoint of its own: one that raises is undone alone and its error
        is raised here, and the others are committed. On disk when this returns.

        A write whose caller was cancelled before its group began is left out; once its
        group has begun it is committed or not with the group, as with ``transaction``."""
        return await self._groups.submit(work)

    async def _run_group(self, works: list[Work[Any]]) -> list[tuple[bool, Any]]:
        async with self._write_lock:
            changes = self._writer.total_changes
            outcomes = await _in_thread(self._writer, _in_transaction,
                                        functools.partial(_each_in_savepoint, works=works))
            self._count(changes)
            return outcomes

    def _count(self, changes_before: int) -> None:
        """Count a committed transaction that wrote something (one that changed no row
        writes nothing to the log and syncs nothing)."""
        if self._writer.total_changes != changes_before:
            self.commits += 1

    async def listen(self, channel: str, wake: Callable[[], None]) -> None:
        raise NotImplementedError("one SQLite file has one node: its workers are woken directly")

    async def read(self, work: Work[T]) -> T:
        """Several reads on the reader's thread in one trip (one consistent snapshot)."""
        return await _in_thread(self._reader, _in_read, _synchronously(work))

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        """A read run whole in one trip to the reader's thread. Executing and fetching in
        two trips let other reads run on the connection in between, inside the read
        transaction the unfinished statement held open: they saw the database as it was
        when that statement began (a session just signed in, a click just committed, not
        yet there) while a long read, such as the activity chart's, was being fetched."""
        values = tuple(params)
        rows: list[Row] = await _in_thread(self._reader, _just,
                                           lambda raw: raw.execute(sql, values).fetchall())
        return rows

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        """The first row of a read, in one trip (see ``fetchall``); the statement is
        finished (reset) before the trip ends."""
        values = tuple(params)
        return await _in_thread(self._reader, _just, lambda raw: _first(raw, sql, values))


class _AioTx:
    """A transaction's statements through aiosqlite, one trip to its thread each."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        async with self._conn.execute(sql, tuple(params)) as cur:
            return cur.rowcount

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        await self._conn.executemany(sql, [tuple(r) for r in rows])

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        values = tuple(params)
        rows: list[Row] = await _in_thread(self._conn, _just,
                                           lambda raw: raw.execute(sql, values).fetchall())
        return rows

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        values = tuple(params)
        return await _in_thread(self._conn, _just, lambda raw: _first(raw, sql, values))

    async def notify(self, channel: str) -> None:
        pass  # one process: its workers are woken directly


class _SyncTx:
    """A transaction's statements on the connection's own thread: every await returns at
    once, so a work function runs to its end in one step (``store.backend.run_sync``)."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self._raw = raw

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        return self._raw.execute(sql, tuple(params)).rowcount

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        self._raw.executemany(sql, (tuple(r) for r in rows))

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        rows: list[Row] = self._raw.execute(sql, tuple(params)).fetchall()
        return rows

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        return _first(self._raw, sql, tuple(params))

    async def notify(self, channel: str) -> None:
        pass  # one process: its workers are woken directly


def _synchronously(work: Work[T]) -> Callable[[sqlite3.Connection], T]:
    return lambda raw: run_sync(work, _SyncTx(raw))


def _first(raw: sqlite3.Connection, sql: str, values: tuple[Any, ...]) -> Row | None:
    cursor = raw.execute(sql, values)
    try:
        row: Row | None = cursor.fetchone()
        return row
    finally:
        cursor.close()


async def _in_thread(
    conn: aiosqlite.Connection, run: Callable[[sqlite3.Connection, Callable[[sqlite3.Connection],
                                                                        T]], T],
    work: Callable[[sqlite3.Connection], T],
) -> T:
    # aiosqlite has no public call that runs a function on its thread with its sqlite3
    # connection; its ``_execute`` and ``_conn`` are what its own methods use (the minor
    # versions it is tested with are pinned in pyproject.toml; the promotion tests run
    # through here).
    result: T = await conn._execute(lambda: run(conn._conn, work))  # type: ignore[no-untyped-call]
    return result


def _in_transaction(raw: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    begin(raw)
    try:
        result = work(raw)
    except BaseException:
        raw.execute("ROLLBACK")
        raise
    raw.execute("COMMIT")
    return result


def _each_in_savepoint(raw: sqlite3.Connection, works: list[Work[Any]]) -> list[tuple[bool, Any]]:
    """Each write in a savepoint of the transaction: (True, its result), or (False, the
    exception that undid it)."""
    outcomes: list[tuple[bool, Any]] = []
    for work in works:
        raw.execute("SAVEPOINT grouped")
        try:
            outcomes.append((True, run_sync(work, _SyncTx(raw))))
        except Exception as exc:
            raw.execute("ROLLBACK TO grouped")
            outcomes.append((False, exc))
        raw.execute("RELEASE grouped")
    return outcomes


def _just(raw: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    return work(raw)


def _in_read(raw: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    raw.execute("BEGIN")
    try:
        return work(raw)
    finally:
        raw.execute("COMMIT")


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = aiosqlite.Row
    for pragma in PRAGMAS:
        await conn.execute(pragma)
    return conn


def migrations(package: str = "store.migrations") -> list[tuple[int, str, str]]:
    """The migrations of one engine this clickrelay knows: (version, file name, SQL), in
    order (SQLite's here, PostgreSQL's in store.postgres.migrations)."""
    found = []
    for entry in resources.files(package).iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def _migrate(conn: aiosqlite.Connection) -> None:
    """Apply the migrations in store/migrations that this database has not seen yet."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT, "
        "applied_at INTEGER NOT NULL)"
    )
    async with conn.execute("SELECT version FROM schema_migrations") as cur:
        applied = {row[0] for row in await cur.fetchall()}
    for version, name, sql in migrations():
        if version in applied:
            continue
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(sql):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, now_us())
            )
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()


def _statements(sql: str) -> list[str]:
    """Split a script into statements; sqlite3 decides where one ends (comments may
    hold semicolons)."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        ln.lstrip().startswith("--") or not ln.strip() for ln in buffer.splitlines()
    ):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer!r}")
    return statements
