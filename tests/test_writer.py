"""The observation writer (store/writer/client.py): the process that commits the tracker's clicks.
A batch is on disk when ``record_observations`` returns; a batch sent again is written
once; SQLite's errors come back by name; a writer that dies is replaced, and one that is
killed while clicks come in loses and doubles none of them."""

from __future__ import annotations

import asyncio
import marshal
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import pytest

from relay.server import Running, running
from store.pragmas import begin
from store.records import Observation
from store.store import Store
from store.writer.client import ObservationWriteError, ObservationWriter, batch_request
from store.writer.process import FRAME
from tests.conftest import wait_until, write_config
from tests.redirecting import click, token
from tests.test_observations import recorder_of, sample


def observation(i: int, message_id: str = "m-1") -> Observation:
    return Observation(message_id, i % 3, f"https://bücher.example/straße?n={i}", "acme1",
                       1_700_000_000_000_000 + i, "GET" if i % 2 else "HEAD",
                       "Mozilla/5.0 (Macintosh) Safari/605.1.15",
                       {"accept": "text/html", "accept-language": "de-CH, fr;q=0.8"},
                       "exchange-online" if i % 2 else None, f"{i:016x}",
                       1_700_000_060_000_000 + i)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "clickrelay.db")  # creates the schema
    yield store
    await store.close()


@pytest.fixture
async def writer(store: Store) -> AsyncIterator[ObservationWriter]:
    writer = ObservationWriter(store.db.path)
    await writer.start()
    yield writer
    await writer.close()


def stored(o: Observation) -> tuple[object, ...]:
    return (o.message_id, o.link_index, o.destination, o.project_sid, o.at, o.method,
            o.user_agent, o.headers, o.network, o.addr_hash, o.promote_after, o.state)


async def test_a_batch_is_on_disk_when_the_writer_answers(
    store: Store, writer: ObservationWriter
) -> None:
    batch = [observation(i) for i in range(3)]
    await writer.record_observations(batch)
    assert writer.pid is not None and writer.pid != os.getpid()
    assert [stored(o) for o in await store.get_observations("m-1")] == [
        stored(o) for o in batch
    ]


async def test_a_batch_larger_than_one_statement_is_written_whole(
    store: Store, writer: ObservationWriter
) -> None:
    batch = [observation(i, f"m-{i % 7}") for i in range(1_234)]
    await writer.record_observations(batch)
    assert await store.count_observations() == 1_234
    # Rows of the last statement too, headers and all.
    assert [stored(o) for o in await store.get_observations("m-2")] == [
        stored(o) for o in batch if o.message_id == "m-2"
    ]


async def test_the_same_batch_sent_again_is_written_once(
    store: Store, writer: ObservationWriter
) -> None:
    batch = [observation(i) for i in range(3)]
    await writer.record_observations(batch)
    await writer.record_observations(batch)  # as the recorder retries a failed batch
    assert await store.count_observations() == 3
    await writer.record_observations(list(batch))  # equal clicks, a new batch: new rows
    assert await store.count_observations() == 6


async def test_a_batch_committed_by_a_writer_that_died_before_answering_is_not_doubled(
    store: Store,
) -> None:
    """Spoken to directly: the first writer commits the batch, its answer is never read
    (the server cannot tell whether it committed); the next writer gets the batch again
    under the same key, answers that it is committed, and writes nothing."""
    batch = [observation(i) for i in range(4)]
    request = batch_request(12345, batch)
    for _ in range(2):
        assert await asyncio.to_thread(commit_unread, store.db.path, request) == (
            12345, None, [])
    assert await store.count_observations() == 4


def commit_unread(path: Path, request: bytes) -> WriterAnswer:
    """Start a writer, send it one request, read its answer, kill it: it has committed
    and answered, but as far as any server knows it died with the batch in hand."""
    with subprocess.Popen([sys.executable, "-m", "store.writer.process", str(path)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as process:
        assert process.stdin is not None and process.stdout is not None
        assert answer(process.stdout) == (0, None, [])  # the database is open
        process.stdin.write(request)
        process.stdin.flush()
        reply = answer(process.stdout)
        process.kill()
    return reply


# The batch's key, its error, the rows left out of it (index, why).
WriterAnswer = tuple[int, str | None, list[tuple[int, str]]]


def answer(stream: IO[bytes]) -> WriterAnswer:
    (size,) = FRAME.unpack(stream.read(FRAME.size))
    key, error, left_out = marshal.loads(stream.read(size))
    return key, error, left_out


async def test_the_wal_is_started_over_while_batches_keep_coming(
    store: Store, writer: ObservationWriter
) -> None:
    """Checkpoints run beside the commits (store/writer/process.py); the WAL must still be
    copied whole now and then, or it only grows: 400 batches would leave it at over
    100 MB."""
    for b in range(400):
        await writer.record_observations([observation(i, f"m-{(b * 37 + i) % 500}")
                                          for i in range(25)])
    assert await store.count_observations() == 10_000
    assert await asyncio.to_thread(os.path.getsize, f"{store.db.path}-wal") < 16 * 2**20


async def test_an_error_of_the_database_comes_back_by_name_and_the_writer_goes_on(
    store: Store, writer: ObservationWriter
) -> None:
    """Not a row's fault: the whole batch fails, for the recorder to try again."""
    pid = writer.pid
    await store.db.write_statement("ALTER TABLE observations RENAME TO observations_away")
    with pytest.raises(ObservationWriteError, match="OperationalError: no such table"):
        await writer.record_observations([observation(1), observation(2)])
    await store.db.write_statement("ALTER TABLE observations_away RENAME TO observations")
    assert await store.count_observations() == 0  # nothing of a failed batch
    await writer.record_observations([observation(3)])
    assert writer.pid == pid
    assert await store.count_observations() == 1


def unstorable_rows() -> dict[int, Observation]:
    """Rows SQLite refuses, by their place in a batch of 1 200 (three statements): text
    that is not UTF-8 (a surrogate, as the HTTP parser keeps a byte that is not UTF-8),
    an integer beyond 64 bits, a missing column, headers that are not text."""
    return {
        3: observation(3)._replace(user_agent="Mozilla/5.0 \udcff"),
        499: observation(499)._replace(headers={"accept": "text/\udce9"}),
        500: observation(500)._replace(at=2**70),
        777: observation(777, message_id=None),  # type: ignore[arg-type]
        1_199: observation(1_199)._replace(headers={"accept": 1}),  # type: ignore[dict-item]
    }


async def test_rows_sqlite_cannot_store_are_left_out_alone_and_the_rest_committed(
    store: Store, writer: ObservationWriter
) -> None:
    """Issue #13, R2: one bad row used to fail its batch, three times, and every click
    in it was lost."""
    pid = writer.pid
    bad = unstorable_rows()
    batch = [bad.get(i) or observation(i, f"m-{i % 7}") for i in range(1_200)]
    assert sorted(await writer.record_observations(batch)) == sorted(bad)
    assert await store.count_observations() == 1_200 - len(bad)
    assert [stored(o) for o in await store.get_observations("m-2")] == [
        stored(o) for i, o in enumerate(batch) if o.message_id == "m-2" and i not in bad
    ]
    await writer.record_observations(batch)  # sent again (same key): written once
    assert await store.count_observations() == 1_200 - len(bad)
    assert writer.pid == pid


def test_the_writer_answers_which_rows_it_left_out_and_why(tmp_path: Path) -> None:
    """Spoken to directly, as the server speaks to it."""
    path = tmp_path / "clickrelay.db"
    asyncio.run(_create_schema(path))
    bad = unstorable_rows()
    batch = [bad.get(i) or observation(i) for i in range(1_200)]
    key, error, left_out = commit_unread(path, batch_request(777, batch))
    assert (key, error) == (777, None)
    reasons = dict(left_out)
    assert sorted(reasons) == sorted(bad)
    assert reasons[3].startswith("UnicodeEncodeError")
    assert reasons[500].startswith("OverflowError")
    assert reasons[777] == "IntegrityError: NOT NULL constraint failed: observations.message_id"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM observations").fetchone() == (1_200 - 5,)


async def _create_schema(path: Path) -> None:
    await (await Store.open(path)).close()


async def test_the_server_counts_and_logs_an_observation_left_out(
    relay: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """Queued beside clicks over HTTP (the redirect itself makes every value storable):
    the clicks are stored, the observation left out is counted and logged, and its
    click is let go as not stored."""
    unstorable = observation(1, "m-unstorable")._replace(user_agent="\udcff")
    clicks = [asyncio.ensure_future(click(relay, token(message_id=f"m-{i}")))
              for i in range(20)]
    assert await recorder_of(relay).record(unstorable) is False
    assert [a.status for a in await asyncio.gather(*clicks)] == [302] * 20
    assert await relay.store.count_observations() == 20
    assert sample(relay, "clickrelay_observations_unstorable_total") == 1
    assert sample(relay, "clickrelay_observations_dropped_total") == 1
    assert "1 of " in caplog.text and "UnicodeEncodeError" in caplog.text
    assert (await click(relay, token(message_id="m-after"))).status == 302
    assert await relay.store.count_observations() == 21


async def test_a_writer_that_was_killed_is_replaced_at_the_next_batch(
    store: Store, writer: ObservationWriter
) -> None:
    first = writer.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await writer.record_observations([observation(1)])
    assert writer.pid not in (None, first)
    assert await store.count_observations() == 1


async def test_the_writer_ignores_an_interrupt_sent_to_the_process_group(
    store: Store, writer: ObservationWriter
) -> None:
    pid = writer.pid
    assert pid is not None
    os.kill(pid, signal.SIGINT)  # Ctrl-C in a terminal reaches every process of the group
    os.kill(pid, signal.SIGTERM)
    await writer.record_observations([observation(1)])
    assert writer.pid == pid
    assert await store.count_observations() == 1


async def test_close_lets_the_batch_in_hand_finish(
    store: Store, writer: ObservationWriter
) -> None:
    pid = writer.pid
    recording = asyncio.create_task(writer.record_observations([observation(1)]))
    await asyncio.sleep(0)  # the batch is on its way
    await writer.close()
    await recording
    assert await store.count_observations() == 1
    with pytest.raises(ProcessLookupError):  # exited and reaped
        os.kill(pid or 0, 0)


async def test_a_writer_that_cannot_open_the_database_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "not-a-clickrelay.db"
    sqlite3.connect(path).close()  # a database without clickrelay's schema
    with pytest.raises(ObservationWriteError, match="no such table: observation_writer"):
        await ObservationWriter(path).start()


async def test_a_writer_killed_while_clicks_come_in_loses_and_doubles_none(
    relay: Running,
) -> None:
    """Clicks in waves over HTTP, the writer killed (SIGKILL) during each of the first
    waves, at whatever point of a batch it is (before the first commit, after the first
    answer, after half of them): every click is redirected, and stored exactly once
    (those past their deadline are stored late)."""
    answers = []
    for wave in range(6):
        clicks = [asyncio.ensure_future(click(relay, token(message_id=f"m-{wave}-{i}")))
                  for i in range(40)]
        if wave < 4:
            while sum(c.done() for c in clicks) < (0, 1, 20, 39)[wave]:
                await asyncio.wait([c for c in clicks if not c.done()],
                                   return_when=asyncio.FIRST_COMPLETED)
            pid = relay.observation_writer.pid
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
        answers += await asyncio.gather(*clicks)
    assert [a.status for a in answers] == [302] * 240
    await wait_until(_count_is(relay, 240))
    rows = await relay.store.db.fetchall(
        "SELECT message_id, COUNT(*) FROM observations GROUP BY message_id HAVING COUNT(*) > 1")
    assert rows == []


async def test_a_writer_killed_with_a_batch_in_hand_is_replaced_and_the_batch_written(
    relay: Running,
) -> None:
    """The batch is sent and not answered (the writer waits for the database's write
    lock, held here) when the writer is killed: the next writer commits it."""
    recorder = recorder_of(relay)
    holder = sqlite3.connect(relay.store.db.path, isolation_level=None, timeout=30,
                             check_same_thread=False)
    # Off the event loop: the relay's own writes may need the loop to finish theirs.
    await asyncio.to_thread(holder.execute, "BEGIN IMMEDIATE")
    try:
        clicks = [asyncio.ensure_future(click(relay, token(message_id=f"m-{i}")))
                  for i in range(10)]
        await wait_until(lambda: recorder.writing and not recorder.queued)
        first = relay.observation_writer.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert [a.status for a in await asyncio.gather(*clicks)] == [302] * 10
    await wait_until(_count_is(relay, 10))
    assert relay.observation_writer.pid not in (None, first)


def _count_is(relay: Running, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await relay.store.count_observations() == n
    return check


async def test_the_writer_ends_with_the_server(
    settings: dict[str, Any], config_path: Path
) -> None:
    async with running(write_config(config_path, settings)) as relay:
        pid = relay.observation_writer.pid
        assert pid is not None
        os.kill(pid, 0)  # running
        assert (await click(relay, token(message_id="m-last"))).status == 302
    with pytest.raises(ProcessLookupError):  # exited and reaped
        os.kill(pid, 0)


def test_the_writer_waits_for_the_write_lock_and_takes_it_when_it_is_given_back(
    tmp_path: Path,
) -> None:
    """Another connection holds the write lock (the server's or promotion's transaction):
    the writer asks again until it is free, not through SQLite's busy handler."""
    path = tmp_path / "lock.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("CREATE TABLE t (x)")
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
    holder.execute("BEGIN IMMEDIATE")
    began = threading.Event()
    waiting = threading.Thread(target=lambda: (begin(writer, wait=60), began.set()))
    waiting.start()
    assert not began.wait(0.2)  # still waiting while the lock is held
    holder.execute("INSERT INTO t VALUES (1)")
    holder.execute("COMMIT")
    waiting.join()
    assert began.is_set() and writer.in_transaction
    writer.execute("INSERT INTO t VALUES (2)")
    writer.execute("COMMIT")
    assert holder.execute("SELECT x FROM t ORDER BY x").fetchall() == [(1,), (2,)]


def test_the_writer_gives_up_on_a_lock_held_too_long_and_not_on_other_errors(
    tmp_path: Path,
) -> None:
    path = tmp_path / "lock.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode = WAL")
    writer = sqlite3.connect(path, isolation_level=None, timeout=0)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        begin(writer, wait=0.05)
    holder.execute("ROLLBACK")
    begin(writer, wait=0.05)
    with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
        begin(writer, wait=60)  # not the lock: said at once
