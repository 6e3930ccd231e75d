"""``clickrelay store copy`` (store/copy.py, docs/deployment.md "Moving up from SQLite"): a
SQLite store filled through the real store API is copied by the real command, in a process
of its own, into a fresh PostgreSQL schema; every table arrives row for row (a body kept in
a file beside the SQLite database arrives inline, claims arrive released), the queued mail
is then delivered by a relay on the copy, and new rows take ids past the copied ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from relay.server import running
from relay.store_copy import store_where
from store.bodies import INLINE_BODY_BYTES
from store.clock import now_us
from store.copy import PRESET, TABLES, CopyError
from store.events import EventRecord, Promoted
from store.idempotency import KeyClaim
from store.records import (
    AnsweredKey,
    ConfigItem,
    DashboardSession,
    LinkRecord,
    NewMessage,
    Observation,
    SharedBody,
)
from store.store import Store
from store.webhooks import NewDelivery
from tests.conftest import write_config
from tests.sink import Sink

ROOT = Path(__file__).resolve().parent.parent
HOUR = 3_600_000_000
LINE = b"x" * 76 + b"\r\n"
BIG = b"Subject: big\r\n\r\n" + LINE * (INLINE_BODY_BYTES // len(LINE) + 100)


def copy_command(source: str, target: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", "store", "copy", "--from", source, "--to", target],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **env})


def copy_of(mid: str, submission: str, body: SharedBody, fill: bytes, at: int) -> NewMessage:
    return NewMessage(mid, submission, "acme", "acme-outgoing", "sender@acme.test",
                      f"{mid}@example.org", "Hi", "news", {"k": "v"}, True, at, b"",
                      (LinkRecord(0, "https://example.com/a", "A"),), shared=body,
                      fills=(fill,))


async def fill(store: Store) -> None:
    """One of everything, through the store's own methods."""
    now = now_us()
    small = SharedBody("sub-small", (b"Subject: small\r\n\r\nclick ", b"\r\n"))
    big = SharedBody("sub-big", (BIG, b"\r\nend\r\n"))
    await store.spool_messages([copy_of(f"small-{n}", "sub-small", small, f"t{n}".encode(), now)
                                for n in range(2)])
    await store.spool_messages([copy_of(f"big-{n}", "sub-big", big, f"token-{n}".encode(), now)
                                for n in range(2)])
    await store.spool_messages([NewMessage(
        "alone", "sub-alone", "acme", "acme-outgoing", "sender@acme.test", "r@example.org",
        "Alone", None, {}, True, now, b"Subject: alone\r\n\r\nbody\r\n",
        (LinkRecord(0, "https://example.com/b"),))])
    await store.record_delivery("small-0", outcome="delivered", at=now, duration_ms=3,
                                code=250)
    await store.claim_due_messages("old-node", now, 100 * HOUR, 1)  # a claim to drop
    await store.record_observations([
        Observation(f"small-{n}", 0, "https://example.com/a", "acme1", now + n, "GET",
                    "UA", {"accept": "*/*"}, "residential", f"hash{n}", now)
        for n in range(3)])
    claimed = await store.claim_due_observations("promoter", now + 1, HOUR, 2)
    await store.record_promotions("promoter", [Promoted(o.id or 0, EventRecord(
        f"event-{o.id}", o.id or 0, o.message_id, "acme", 0, o.destination, o.at, "genuine",
        5, False, True, True, None, ("a",), ("r",), "v1", "desktop", "browser", "Firefox",
        "UA", now), [NewDelivery(f"delivery-{o.id}", "acme", "hook", "message.clicked",
                                 '{"x": 1}', now, f"event-{o.id}")]) for o in claimed])
    await store.record_webhook_attempt(f"delivery-{claimed[0].id}", at=now, duration_ms=4,
                                       status_code=500, error="boom", delivered=False,
                                       next_attempt_at=now)
    await store.claim_idempotency_keys("acme", [KeyClaim("send", "key-1", "hash")], now, HOUR)
    await store.spool_messages([], AnsweredKey("acme", "send", "key-1", '{"ok": 1}'))
    await store.create_session(DashboardSession("session", "admin", "cred", "csrf", now,
                                                now + HOUR))
    await store.note_config_items([ConfigItem("route", "acme-outgoing", "f1")], now)
    await store.set_route_settings("acme-outgoing", {"track_clicks": False}, now)


async def rows(store: Store, table: str) -> list[tuple[Any, ...]]:
    key = next(t.key for t in TABLES if t.name == table)
    return [tuple(r) for r in await store.db.fetchall(
        f"SELECT * FROM {table} ORDER BY {', '.join(key)}")]


@pytest.fixture
async def source(tmp_path: Path) -> Path:
    path = tmp_path / "old" / "clickrelay.db"
    store = await Store.open(path)
    try:
        await fill(store)
        assert (path.parent / "bodies" / "sub-big").is_file()  # the big body is in a file
    finally:
        await store.close()
    return path


async def test_copy_to_postgresql_keeps_every_row_and_the_mail_is_delivered_from_it(
    source: Path, pg_url: str, settings: dict[str, Any], config_path: Path, sink: Sink,
) -> None:
    old = await Store.open(source)
    before = {t.name: await rows(old, t.name) for t in TABLES}
    sources = {m: await old.message_source(m) for m in ("big-0", "big-1", "small-1", "alone")}
    old_messages = await old.db.fetchall("SELECT * FROM messages ORDER BY id")
    old_bodies = await old.db.fetchall("SELECT * FROM bodies ORDER BY id")
    await old.close()

    done = copy_command(f"sqlite:///{source}", "env:COPY_TARGET", COPY_TARGET=pg_url)
    assert done.returncode == 0, done.stderr
    assert "messages: 5 of 5 rows" in done.stderr and "observations: 3 of 3 rows" in done.stderr

    new = await Store.open(pg_url)
    try:
        tables = {r[0] for r in await new.db.fetchall(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema()")}
        assert tables - {"schema_migrations"} == {t.name for t in TABLES}
        for table in TABLES:
            after = await rows(new, table.name)
            assert len(after) == len(before[table.name]), table.name
            if table.name not in ("messages", "bodies"):
                assert after == before[table.name], table.name
        assert [without_file(r) for r in await new.db.fetchall(
            "SELECT * FROM messages ORDER BY id")] == [without_file(r) for r in old_messages]
        assert [tuple(r) for r in await new.db.fetchall(
            "SELECT * FROM bodies WHERE id != 'sub-big' ORDER BY id")] == [
            tuple(r) for r in old_bodies if r["id"] != "sub-big"]
        by_id = {r["id"]: r for r in await new.db.fetchall("SELECT * FROM messages")}
        assert all(r["claimed_by"] is None and r["claimed_until"] is None
                   for r in by_id.values())
        assert by_id["big-0"]["fills_at"] is None and by_id["big-0"]["fills"] is not None
        body = await new.db.fetchone("SELECT data FROM bodies WHERE id = 'sub-big'")
        assert body is not None and bytes(body["data"]) == BIG + b"\r\nend\r\n"
        for message_id, content in sources.items():
            assert await new.message_source(message_id) == content, message_id
        for table in ("observations", "delivery_attempts", "webhook_attempts"):
            high = max(r[0] for r in before[table])
            assert await next_id(new, table) > high, table
    finally:
        await new.close()

    settings["store"]["url"] = pg_url
    async with running(write_config(config_path, settings)):
        received = await sink.wait_for(4)
    assert sorted(r.rcpt_tos[0] for r in received) == sorted(
        [f"{m}@example.org" for m in ("small-1", "big-0", "big-1")] + ["r@example.org"])
    big_copy = next(r for r in received if r.rcpt_tos[0] == "big-1@example.org")
    assert BIG in big_copy.content and b"token-1" in big_copy.content


def without_file(row: Any) -> dict[str, Any]:
    """A message's row but for what the copy changes: its claim (dropped) and, for a copy
    whose fills were in a body file, where they were (now inline; compared by source)."""
    values = dict(zip(row.keys(), row, strict=True))
    values.pop("claimed_by"), values.pop("claimed_until")
    if values["body_id"] == "sub-big":
        values.pop("fills"), values.pop("fills_at"), values.pop("fills_size")
    return values


async def next_id(store: Store, table: str) -> int:
    """The id a new row of ``table`` takes (inserted and rolled back)."""
    class Rollback(Exception):
        pass

    taken: list[int] = []
    row_sql = {
        "observations": "INSERT INTO observations (message_id, link_index, destination,"
                        " project_sid, at, method, addr_hash, promote_after)"
                        " VALUES ('m', 0, 'd', 's', 0, 'GET', 'h', 0) RETURNING id",
        "delivery_attempts": "INSERT INTO delivery_attempts (message_id, attempt, at, outcome,"
                             " duration_ms) VALUES ('alone', 9, 0, 'x', 0) RETURNING id",
        "webhook_attempts": "INSERT INTO webhook_attempts (delivery_id, attempt, at,"
                            " duration_ms) SELECT id, 9, 0, 0 FROM webhook_deliveries"
                            " LIMIT 1 RETURNING id",
    }[table]
    try:
        async with store.db.transaction() as tx:
            row = await tx.fetchone(row_sql)
            assert row is not None
            taken.append(int(row[0]))
            raise Rollback
    except Rollback:
        pass
    return taken[0]


async def test_a_second_copy_into_the_same_target_is_refused_naming_a_table(
    source: Path, pg_url: str,
) -> None:
    assert copy_command(f"sqlite:///{source}", pg_url).returncode == 0
    again = copy_command(f"sqlite:///{source}", pg_url)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1] == (
        "clickrelay: cannot copy the store: the target store is not empty: table messages"
        " holds rows (copy only into a new store)")


async def test_copy_back_to_sqlite_and_refusals(source: Path, pg_url: str, tmp_path: Path
                                                ) -> None:
    assert copy_command(f"sqlite:///{source}", pg_url).returncode == 0
    back = tmp_path / "back" / "clickrelay.db"
    assert copy_command(pg_url, f"sqlite:///{back}").returncode == 0
    first, second = await Store.open(source), await Store.open(back)
    try:
        for table in ("observations", "events", "webhook_deliveries", "idempotency_keys"):
            assert await rows(first, table) == await rows(second, table)
        assert await second.message_source("big-1") == await first.message_source("big-1")
    finally:
        await first.close()
        await second.close()

    (source.parent / "bodies" / "sub-big").unlink()  # a fault halfway: the target stays empty
    other = tmp_path / "other" / "clickrelay.db"
    broken = copy_command(f"sqlite:///{source}", f"sqlite:///{other}")
    assert broken.returncode == 1 and "cannot read the fills of big-0" in broken.stderr
    empty = await Store.open(other)
    try:
        assert [await rows(empty, t.name) for t in TABLES if t.name != PRESET] == [
            [] for t in TABLES if t.name != PRESET]
    finally:
        await empty.close()

    bad = copy_command("mysql://host/db", pg_url)
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "clickrelay: cannot copy the store: mysql://…: must be sqlite:///PATH or"
        " postgresql://user:password@host/db")
    missing = copy_command(f"sqlite:///{tmp_path / 'none.db'}", pg_url)
    assert missing.stderr.strip() == (
        f"clickrelay: cannot copy the store: no store at {tmp_path / 'none.db'}")
    unset = copy_command("env:COPY_NOT_SET", pg_url)
    assert "environment variable COPY_NOT_SET is not set or empty" in unset.stderr


async def test_a_source_of_another_schema_version_is_refused(source: Path, pg_url: str
                                                             ) -> None:
    store = await Store.open(source)
    await store.db.write_statement("DELETE FROM schema_migrations WHERE version = "
                                   "(SELECT max(version) FROM schema_migrations)")
    await store.close()
    refused = copy_command(f"sqlite:///{source}", pg_url)
    assert refused.returncode == 1 and "older than this clickrelay's" in refused.stderr


def test_urls_read_as_the_configuration_reads_them(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert store_where("sqlite:///data/c.db") == tmp_path / "data" / "c.db"
    assert store_where("sqlite:////abs/c.db") == Path("/abs/c.db")
    monkeypatch.setenv("COPY_URL", "postgresql://u@h/db")
    assert store_where("env:COPY_URL") == "postgresql://u@h/db"
    with pytest.raises(CopyError, match="names its host and database"):
        store_where("postgresql://u@h")
    assert PRESET in {t.name for t in TABLES}
