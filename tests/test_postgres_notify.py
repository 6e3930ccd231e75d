"""Wake-ups between the nodes of one PostgreSQL store (PgDatabase.listen, Tx.notify): a
transaction that notifies a channel wakes every listener once it commits, and not before;
a listener whose connection is lost raises, so that the supervised task running it starts
it again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from store.backend import Tx
from store.postgres import PgDatabase
from store.postgres import db as postgres_db
from store.postgres.migrate import connect as pg_connect
from tests.conftest import wait_until


@pytest.fixture
async def two_nodes(pg_url: str) -> AsyncIterator[tuple[PgDatabase, PgDatabase]]:
    first, second = await PgDatabase.open(pg_url), await PgDatabase.open(pg_url)
    yield first, second
    await first.close()
    await second.close()


async def test_a_notify_wakes_a_listener_on_another_node_when_it_commits(
    two_nodes: tuple[PgDatabase, PgDatabase],
) -> None:
    listening, writing = two_nodes
    wakes: list[int] = []
    task = asyncio.create_task(listening.listen("spool", lambda: wakes.append(1)))
    try:
        await wait_until(lambda: wakes == [1])  # once when listening begins
        release = asyncio.Event()

        async def work(tx: Tx) -> None:
            await tx.notify("spool")
            await release.wait()  # the notification waits for the commit

        writer = asyncio.create_task(writing.write(work))
        await asyncio.sleep(0.2)
        assert wakes == [1]
        release.set()
        await writer
        await wait_until(lambda: wakes == [1, 1])
        await writing.write(lambda tx: tx.notify("webhooks"))  # another channel
        await writing.write(lambda tx: tx.notify("spool"))
        await wait_until(lambda: len(wakes) == 3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_listener_whose_connection_is_lost_raises(
    two_nodes: tuple[PgDatabase, PgDatabase], pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    listening, _ = two_nodes
    opened: list[asyncpg.Connection] = []

    async def connect(url: str) -> asyncpg.Connection:  # the listener's connection, kept
        conn = await pg_connect(url)
        opened.append(conn)
        return conn

    monkeypatch.setattr(postgres_db, "connect", connect)
    wakes: list[int] = []
    task = asyncio.create_task(listening.listen("spool", lambda: wakes.append(1)))
    await wait_until(lambda: wakes == [1])
    admin = await asyncpg.connect(pg_url)
    try:  # the fault: the server ends the listener's session
        await admin.execute("SELECT pg_terminate_backend($1)", opened[0].get_server_pid())
    finally:
        await admin.close()
    with pytest.raises(ConnectionError, match="listening on spool"):
        await task
