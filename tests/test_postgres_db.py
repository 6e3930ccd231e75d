"""The PostgreSQL store's database layer (store/postgres/): placeholders, transactions,
group commit, migrations and the schema against SQLite's. Each test that needs the server
has a schema of its own (the ``pg_url`` fixture, tests/postgres.py)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from store.backend import Database, Dialect, Tx
from store.db import SqliteDatabase
from store.dialect import PgDialect, SqliteDialect
from store.group_commit import GROUP_LIMIT
from store.postgres import PgDatabase, PgOpenError, PgTx
from store.postgres.db import rows_changed
from store.postgres.migrate import migrations
from store.postgres.placeholders import to_postgres
from tests.postgres import pg_schema, sqlite_schema


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT ?, ?", "SELECT $1, $2"),
    ("SELECT ?1, ?2, ?1", "SELECT $1, $2, $1"),
    ("SELECT ?2, ?", "SELECT $2, $3"),  # a bare ? follows the largest number so far, as SQLite
    ("SELECT '?', 'it''s ?', ?", "SELECT '?', 'it''s ?', $1"),
    ('SELECT "a?b", ?', 'SELECT "a?b", $1'),
    ("SELECT ? -- why?\n, ? /* ? */", "SELECT $1 -- why?\n, $2 /* ? */"),
    ("SELECT 1 - ?, 2 / ?", "SELECT 1 - $1, 2 / $2"),
    ("SELECT ?10", "SELECT $10"),
    ("SELECT x::bigint, ?", "SELECT x::bigint, $1"),
])
def test_placeholders_are_numbered_outside_literals_and_comments(sql: str, expected: str) -> None:
    assert to_postgres(sql) == expected


def test_a_placeholder_numbered_zero_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\?0"):
        to_postgres("SELECT ?0")


def test_a_named_parameter_is_refused_outside_literals() -> None:
    with pytest.raises(ValueError, match="named parameter at ':cutoff'"):
        to_postgres("DELETE FROM t WHERE at < :cutoff")
    assert to_postgres("SELECT ':x', CAST(? AS TEXT)") == "SELECT ':x', CAST($1 AS TEXT)"


@pytest.mark.parametrize(("status", "count"), [
    ("INSERT 0 3", 3), ("UPDATE 2", 2), ("DELETE 0", 0), ("SELECT 5", 0), ("CREATE TABLE", 0),
])
def test_rows_changed_reads_the_command_tag(status: str, count: int) -> None:
    assert rows_changed(status) == count


async def _json_queries(tx: Tx, dialect: Any) -> list[list[tuple[Any, ...]]]:
    """The shapes of store/context.py's, events.py's and webhooks.py's JSON reads."""
    values = await tx.fetchall(f"SELECT value FROM ({dialect.json_values()}) v ORDER BY value",
                               (json.dumps(["b", "a?"]),))
    ids = await tx.fetchall(f"SELECT v FROM (SELECT 1 AS v UNION SELECT 2 UNION SELECT 3) AS t"
                            f" WHERE v IN ({dialect.json_values('?', 'INTEGER')})"
                            " ORDER BY v", (json.dumps([3, 1]),))
    rows = await tx.fetchall(
        f"SELECT {dialect.json_at(0, 'INTEGER')} + 1, {dialect.json_at(1, 'TEXT')},"
        f" COUNT(*) OVER (PARTITION BY j.key) FROM {dialect.json_rows()}"
        f" WHERE {dialect.json_at(2, 'INTEGER')} BETWEEN ? AND ? ORDER BY 1",
        (json.dumps([[1, "x", 10], [2, "y", 20], [1_700_000_000_000_000, "z", 15]]), 10, 15))
    return [[tuple(r) for r in found] for found in (values, ids, rows)]


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    async def fetchall(self, sql: str, params: Any = ()) -> list[Any]:
        return self._conn.execute(sql, tuple(params)).fetchall()


async def test_both_dialects_read_json_parameters_alike(pg_url: str) -> None:
    expected = [[("a?",), ("b",)], [(1,), (3,)],
                [(2, "x", 1), (1_700_000_000_000_001, "z", 1)]]
    lite = await _json_queries(_SqliteTx(sqlite3.connect(":memory:")), SqliteDialect())  # type: ignore[arg-type]
    assert lite == expected
    db = await PgDatabase.open(pg_url)
    try:
        assert await db.read(lambda tx: _json_queries(tx, PgDialect())) == expected
    finally:
        await db.close()


def _insert(value: int, *, fail: bool = False) -> Any:
    async def work(tx: Tx) -> int:
        await tx.execute("INSERT INTO t VALUES (?)", (value,))
        if fail:
            await tx.execute("INSERT INTO t VALUES (?)", (value,))  # a duplicate key
        return value
    return work


async def _txid(tx: Tx) -> int:
    await tx.execute("INSERT INTO t (v) SELECT COALESCE(MAX(v), 0) + 1 FROM t")
    row = await tx.fetchone("SELECT txid_current()")
    assert row is not None
    return int(row[0])


@pytest.fixture
async def db(pg_url: str) -> Any:
    database = await PgDatabase.open(pg_url)
    await database.write_statement("CREATE TABLE t (v BIGINT PRIMARY KEY)")
    yield database
    await database.close()


async def test_concurrent_writes_share_a_commit_and_a_failing_one_is_undone_alone(
    db: PgDatabase,
) -> None:
    before = db.commits
    results = await asyncio.gather(*(db.write_grouped(_insert(v, fail=v == 3))
                                     for v in range(1, 6)), return_exceptions=True)
    assert results[:2] == [1, 2] and results[3:] == [4, 5]
    assert isinstance(results[2], asyncpg.UniqueViolationError)
    assert [r["v"] for r in await db.fetchall("SELECT v FROM t ORDER BY v")] == [1, 2, 4, 5]
    assert db.commits - before == 1  # five writes asked for at once: one commit


async def test_a_write_alone_in_its_group_is_committed_or_undone_alone(db: PgDatabase) -> None:
    before = db.commits
    assert await db.write_grouped(_insert(1)) == 1
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.write_grouped(_insert(2, fail=True))
    assert [r["v"] for r in await db.fetchall("SELECT v FROM t")] == [1]
    assert db.commits - before == 1


async def test_writes_asked_for_during_a_commit_go_together_in_the_next(db: PgDatabase) -> None:
    release = asyncio.Event()

    async def held(tx: Tx) -> int:
        await release.wait()  # the group is under way until the test lets it go
        return await _txid(tx)

    first = asyncio.ensure_future(db.write_grouped(held))
    await asyncio.sleep(0.05)
    later = [asyncio.ensure_future(db.write_grouped(_txid)) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert not any(f.done() for f in later)
    before = db.commits
    release.set()
    txids = [await first, *await asyncio.gather(*later)]
    assert len(set(txids[1:])) == 1 and txids[0] != txids[1]
    assert db.commits - before == 2


async def test_a_group_holds_at_most_the_limit(db: PgDatabase) -> None:
    txids = await asyncio.gather(*(db.write_grouped(_txid) for _ in range(GROUP_LIMIT + 6)))
    assert [txids.count(t) for t in dict.fromkeys(txids)] == [GROUP_LIMIT, 6]


async def test_a_write_whose_caller_was_cancelled_before_its_group_is_left_out(
    db: PgDatabase,
) -> None:
    first = asyncio.ensure_future(db.write_grouped(_insert(1)))
    second = asyncio.ensure_future(db.write_grouped(_insert(2)))
    await asyncio.sleep(0)  # both are queued; their group has not begun
    second.cancel()
    assert await first == 1
    with pytest.raises(asyncio.CancelledError):
        await second
    assert [r[0] for r in await db.fetchall("SELECT v FROM t")] == [1]


async def test_a_transaction_that_raises_is_rolled_back(db: PgDatabase) -> None:
    before = db.commits
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            assert await tx.execute("INSERT INTO t VALUES (?), (?)", (1, 2)) == 2
            raise RuntimeError("undo")
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.write(_insert(7, fail=True))
    assert await db.fetchall("SELECT v FROM t") == []
    assert db.commits == before
    async with db.transaction() as tx:
        await tx.executemany("INSERT INTO t VALUES (?)", [(5,), (6,)])
    assert db.commits == before + 1  # counted by the server: executemany gives no count
    row = await db.fetchone("SELECT COUNT(*) AS n FROM t WHERE v >= ?", (5,))
    assert row is not None and row["n"] == row[0] == 2


async def test_a_read_sees_one_snapshot_and_writes_nothing(db: PgDatabase) -> None:
    await db.write_statement("INSERT INTO t VALUES (1)")

    async def twice(tx: Tx) -> tuple[int, int]:
        first = await tx.fetchall("SELECT v FROM t")
        assert await db.write_statement("INSERT INTO t VALUES (2)") == 1  # another connection
        return len(first), len(await tx.fetchall("SELECT v FROM t"))

    assert await db.read(twice) == (1, 1)
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await db.read(_insert(3))


async def _versions(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        return [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
    finally:
        await conn.close()


async def test_nodes_starting_together_migrate_once(pg_url: str) -> None:
    dbs = await asyncio.gather(*(PgDatabase.open(pg_url) for _ in range(2)))
    for opened in dbs:
        await opened.close()
    assert sorted(await _versions(pg_url)) == [v for v, _, _ in migrations()]


async def test_processes_starting_together_migrate_once(pg_url: str) -> None:
    script = ("import asyncio, sys; from store.postgres import PgDatabase\n"
              "async def main():\n    await (await PgDatabase.open(sys.argv[1])).close()\n"
              "asyncio.run(main())")
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", script, pg_url)
             for _ in range(3)]
    assert [await p.wait() for p in procs] == [0, 0, 0]
    assert sorted(await _versions(pg_url)) == [v for v, _, _ in migrations()]


async def test_a_schema_newer_than_this_code_is_refused(pg_url: str) -> None:
    await (await PgDatabase.open(pg_url)).close()
    conn = await asyncpg.connect(pg_url)
    await conn.execute("INSERT INTO schema_migrations VALUES (99, '0099_future.sql', 0)")
    await conn.close()
    newest = migrations()[-1][0]
    with pytest.raises(PgOpenError, match=r"the database's schema is version 99, newer than "
                                          rf"this clickrelay \({newest}\): upgrade clickrelay"):
        await PgDatabase.open(pg_url)


async def test_an_unreachable_server_is_said_in_one_line() -> None:
    with pytest.raises(PgOpenError) as caught:
        await PgDatabase.open("postgresql://clickrelay:secret@127.0.0.1:1/relaydb")
    message = str(caught.value)
    assert message.startswith("cannot connect to PostgreSQL at 127.0.0.1:1/relaydb: ")
    assert "\n" not in message and "secret" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_a_missing_schema_is_said_in_one_line(pg_url: str) -> None:
    missing = pg_url.replace("search_path=", "search_path=nothing_here_")
    with pytest.raises(PgOpenError, match="no schema of its search_path exists"):
        await PgDatabase.open(missing)


async def test_the_postgresql_schema_is_sqlites(pg_url: str, tmp_path: Path) -> None:
    """Every table, column (in order, with its type, NOT NULL and default), index, unique
    constraint and foreign key of SQLite's migrations has its twin in PostgreSQL's: a
    migration written for one engine alone fails here."""
    lite = await SqliteDatabase.open(tmp_path / "schema.db")
    await lite.close()
    with closing(sqlite3.connect(tmp_path / "schema.db")) as conn:
        expected = sqlite_schema(conn)
    await (await PgDatabase.open(pg_url)).close()
    conn = await asyncpg.connect(pg_url)
    try:
        found = await pg_schema(conn)
    finally:
        await conn.close()
    assert sorted(found) == sorted(expected)
    for table, parts in expected.items():
        for part, value in parts.items():
            assert found[table][part] == value, f"{table}: {part}"


def _conforms(db: PgDatabase, tx: PgTx) -> tuple[Database, Tx, Dialect, Dialect]:
    """PgDatabase, PgTx and both dialects are what store/backend.py asks for (mypy checks)."""
    return db, tx, PgDialect(), SqliteDialect()
