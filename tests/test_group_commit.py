"""Group commit of the store's writes (store/db.py ``write_grouped``): writes asked for
together share one transaction and one commit; one that fails is undone alone and its
error reaches its caller; the others are on disk."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from store.backend import Tx
from store.db import SqliteDatabase


async def test_concurrent_writes_share_a_commit_and_a_failing_one_is_undone_alone(
    tmp_path: Path,
) -> None:
    db = await SqliteDatabase.open(tmp_path / "group.db")
    try:
        await db.write_statement("CREATE TABLE t (v INTEGER PRIMARY KEY)")
        before = db.commits

        def insert(value: int) -> object:
            async def work(tx: Tx) -> int:
                await tx.execute("INSERT INTO t VALUES (?)", (value,))
                if value == 3:
                    await tx.execute("INSERT INTO t VALUES (1)")  # a duplicate: this write fails
                return value
            return work

        results = await asyncio.gather(*(db.write_grouped(insert(v)) for v in range(1, 6)),
                                       return_exceptions=True)
        assert results[:2] == [1, 2] and results[3:] == [4, 5]
        assert isinstance(results[2], sqlite3.IntegrityError)
        rows = await db.fetchall("SELECT v FROM t ORDER BY v")
        assert [r[0] for r in rows] == [1, 2, 4, 5]  # the failed write left nothing behind
        assert db.commits - before == 1  # five writes asked for at once: one commit
    finally:
        await db.close()


async def test_a_write_whose_caller_was_cancelled_before_its_group_is_left_out(
    tmp_path: Path,
) -> None:
    db = await SqliteDatabase.open(tmp_path / "group.db")
    try:
        await db.write_statement("CREATE TABLE t (v INTEGER)")
        first = asyncio.ensure_future(db.write_grouped(
            lambda tx: tx.execute("INSERT INTO t VALUES (1)")))
        second = asyncio.ensure_future(db.write_grouped(
            lambda tx: tx.execute("INSERT INTO t VALUES (2)")))
        await asyncio.sleep(0)  # both are queued; their group has not begun
        second.cancel()
        await first
        with pytest.raises(asyncio.CancelledError):
            await second
        assert [r[0] for r in await db.fetchall("SELECT v FROM t")] == [1]
    finally:
        await db.close()
