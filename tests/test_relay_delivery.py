"""Per-recipient copies, the durable spool and upstream delivery (docs/architecture.md,
docs/mail.md)."""

from __future__ import annotations

import asyncio
import re
import smtplib
from pathlib import Path
from typing import Any

import pytest

from relay.config.load import load_config
from relay.server import Running, running
from store.store import Store
from tests.conftest import finished, send, simple_message, wait_until, write_config
from tests.sink import Sink

# Each test on a SQLite file, then on a PostgreSQL schema of its own.
pytestmark = pytest.mark.usefixtures("both_stores")

TOKEN = re.compile(rb"/c/([A-Za-z0-9_.-]+)")
QUEUED = re.compile(r"queued as ((?:[0-9a-f-]{36} ?)+)")

MIXED = (
    b"From: a@acme.test\r\nTo: x@example.org, y@example.org\r\nCc: z@example.org\r\n"
    b"Subject: mixed\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n'
    b"--inner\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    b"See https://example.com/a   (trailing spaces kept)  \r\n"
    b"--inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b'<a href="https://example.com/a">A</a> <a href="https://example.com/b">B</a>\r\n'
    b"--inner--\r\n"
    b"--outer\r\nContent-Type: application/octet-stream\r\n"
    b'Content-Disposition: attachment; filename="x.bin"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    b"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\r\n"
    b"--outer\r\nContent-Type: text/html; charset=utf-8\r\n"
    b'Content-Disposition: attachment; filename="page.html"\r\n\r\n'
    b'<a href="https://example.com/attached">not a body part</a>\r\n'
    b"--outer--\r\n"
)


def _parts(content: bytes) -> list[bytes]:
    return re.split(rb"\r\n--(?:outer|inner)(?:--)?\r\n", content)


async def test_each_recipient_gets_its_own_transaction_and_tokens(
    relay: Running, sink: Sink
) -> None:
    rcpts = ["x@example.org", "y@example.org", "z@example.org"]
    await send(relay.smtp_port, MIXED, rcpts=rcpts)
    received = await sink.wait_for(3)
    assert sorted(r.rcpt_tos for r in received) == [(r,) for r in rcpts]
    tokens = [TOKEN.findall(r.content) for r in received]
    assert all(len(t) == 2 for t in tokens)
    assert len({t for ts in tokens for t in ts}) == 6
    for r in received:  # To/Cc unchanged
        assert b"To: x@example.org, y@example.org\r\nCc: z@example.org\r\n" in r.content


async def test_parts_other_than_html_bodies_are_byte_identical(relay: Running, sink: Sink) -> None:
    await send(relay.smtp_port, MIXED)
    content = (await sink.wait_for(1))[0].content
    before, after = _parts(MIXED), _parts(content)
    assert len(before) == len(after)
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert changed == [3]  # only the text/html body part
    assert b"https://example.com/attached" in after[5]


async def test_reply_names_one_id_per_recipient(relay: Running, sink: Sink) -> None:
    def transaction() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=30) as s:
            s.ehlo("c")
            s.login("u", "test-project-token-0123456789")
            s.mail("a@acme.test")
            s.rcpt("x@example.org")
            s.rcpt("y@example.org")
            return s.data(simple_message())

    code, reply = await asyncio.to_thread(transaction)
    assert code == 250
    match = QUEUED.search(reply.decode())
    assert match, reply
    ids = match.group(1).split()
    assert len(ids) == 2
    for message_id in ids:
        assert await relay.store.get_message(message_id) is not None


async def test_temporary_failures_are_retried_until_delivered(relay: Running, sink: Sink) -> None:
    sink.fail("DATA", "451 4.3.0 try later")
    sink.fail("RCPT", "450 4.2.1 mailbox busy")
    sink.fail("MAIL", None)  # connection dropped
    await send(relay.smtp_port, simple_message())
    received = await sink.wait_for(1)
    assert len(received) == 1
    row = await relay.store.db.fetchone("SELECT id FROM messages")
    assert row is not None
    await finished(relay, row[0])
    attempts = await relay.store.delivery_attempts(row[0])
    assert [a.outcome for a in attempts] == ["temporary"] * 3 + ["delivered"]
    assert [a.code for a in attempts[:2]] == [451, 450]
    message = await relay.store.get_message(row[0])
    assert message is not None and message.status == "delivered"


async def test_permanent_failure_is_recorded(relay: Running, sink: Sink) -> None:
    sink.fail("RCPT", "550 5.1.1 no such user")
    await send(relay.smtp_port, simple_message())
    row = await relay.store.db.fetchone("SELECT id FROM messages")
    assert row is not None
    message = await finished(relay, row[0])
    assert message.status == "failed"
    assert message.last_error is not None and "550" in message.last_error
    attempts = await relay.store.delivery_attempts(row[0])
    assert [(a.outcome, a.code) for a in attempts] == [("permanent", 550)]
    assert all(r.mail_from == "<>" for r in sink.received)  # its notification, at most


async def test_spool_failure_answers_451_and_keeps_nothing(
    relay: Running, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(relay.store, "spool_messages", broken)
    with pytest.raises(smtplib.SMTPDataError) as info:
        await send(relay.smtp_port, simple_message())
    assert info.value.smtp_code == 451
    assert await relay.store.db.fetchall("SELECT id FROM messages") == []


async def test_mail_spooled_before_a_stop_is_delivered_after_restart(
    settings: dict[str, Any], config_path: Path, sink: Sink
) -> None:
    await sink.stop()  # upstream down: connection refused
    config = write_config(config_path, settings)
    async with running(config) as r:
        await send(r.smtp_port, simple_message(), rcpts=["x@example.org", "y@example.org"])
    store = await Store.open(config.store.where)
    queued = await store.list_queued()
    await store.close()
    assert len(queued) == 2
    await sink.start(port=settings_port(settings))
    async with running(load_config(config_path)):
        received = await sink.wait_for(2)
    assert sorted(r.rcpt_tos[0] for r in received) == ["x@example.org", "y@example.org"]


def settings_port(settings: dict[str, Any]) -> int:
    return int(settings["upstream"]["url"].rsplit(":", 1)[1])


async def test_maildir_upstream_receives_the_message(
    settings: dict[str, Any], config_path: Path, tmp_path: Path
) -> None:
    settings["upstream"]["url"] = "maildir:outbox"
    async with running(write_config(config_path, settings)) as r:
        await send(r.smtp_port, simple_message())
        new = tmp_path / "outbox" / "new"
        await wait_until(lambda: new.is_dir() and any(new.iterdir()))
    files = list(new.iterdir())
    assert len(files) == 1
    content = files[0].read_bytes()
    assert content.startswith(b"Return-Path: <sender@acme.test>\r\nDelivered-To: rcpt@example.org")
    assert TOKEN.search(content)
    assert not any((tmp_path / "outbox" / "tmp").iterdir())


async def test_idempotency_key_over_smtp_replays_the_first_answer(
    relay: Running, sink: Sink
) -> None:
    def transaction(message: bytes) -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=30) as s:
            s.ehlo("c")
            s.login("u", "test-project-token-0123456789")
            s.mail("a@acme.test")
            s.rcpt("x@example.org")
            return s.data(message)

    first = simple_message(headers="Idempotency-Key: order-42\r\n")
    code1, reply1 = await asyncio.to_thread(transaction, first)
    code2, reply2 = await asyncio.to_thread(transaction, first)
    assert (code1, code2) == (250, 250)
    assert reply1 == reply2  # the same message id, nothing spooled twice
    rows = await relay.store.db.fetchall("SELECT id FROM messages")
    assert len(rows) == 1
    other = simple_message(headers="Idempotency-Key: order-42\r\n", subject="Different")
    code3, reply3 = await asyncio.to_thread(transaction, other)
    assert code3 == 550
    assert b"Idempotency-Key" in reply3
    await sink.wait_for(1)
    assert len(await relay.store.db.fetchall("SELECT id FROM messages")) == 1


async def test_idempotency_key_is_given_back_when_spooling_fails(
    relay: Running, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = relay.store.spool_messages

    async def broken(*args: Any) -> None:
        raise OSError("disk full")

    message = simple_message(headers="Idempotency-Key: retry-me\r\n")
    monkeypatch.setattr(relay.store, "spool_messages", broken)
    with pytest.raises(smtplib.SMTPDataError) as info:
        await send(relay.smtp_port, message)
    assert info.value.smtp_code == 451
    monkeypatch.setattr(relay.store, "spool_messages", real)
    assert await send(relay.smtp_port, message) == {}
    await sink.wait_for(1)
