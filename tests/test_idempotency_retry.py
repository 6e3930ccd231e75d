"""An MTA's retry of a keyed mail is the same mail (docs/mail.md, "SMTP submission"): the
trace fields an MTA adds on each attempt are not compared, everything else is."""

from __future__ import annotations

import asyncio
import smtplib

import pytest

from relay.server import Running
from tests.conftest import PROJECT_TOKEN, simple_message
from tests.sink import Sink

# Each test on a SQLite file, then on a PostgreSQL schema of its own.
pytestmark = pytest.mark.usefixtures("both_stores")

# What Postfix puts on top of a mail it relays, once per attempt (its queue id and time).
POSTFIX_RECEIVED = (
    "Received: from app.acme.test (app.acme.test [192.0.2.10])\r\n"
    "\tby mx.acme.test (Postfix) with ESMTPSA id {queue_id}\r\n"
    "\tfor <x@example.org>; {date}\r\n"
)
KEYED = simple_message(
    headers="Idempotency-Key: order-42\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n")


def attempt(port: int, message: bytes) -> tuple[int, bytes]:
    """One transaction as Postfix makes it (EHLO, AUTH, MAIL, RCPT, DATA); DATA's reply."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("mx.acme.test")
        client.login("postfix", PROJECT_TOKEN)
        client.mail("app@acme.test", ["BODY=8BITMIME"])
        client.rcpt("x@example.org")
        return client.data(message)


def relayed_by_postfix(message: bytes, queue_id: str, date: str, *trace: str) -> bytes:
    received = POSTFIX_RECEIVED.format(queue_id=queue_id, date=date)
    return (received + "".join(trace)).encode() + message


async def test_postfix_retry_with_a_new_received_line_is_the_same_mail(
    relay: Running, sink: Sink
) -> None:
    first = relayed_by_postfix(KEYED, "4ZxA1", "Mon, 7 Dec 2026 10:00:01 +0000 (UTC)")
    retry = relayed_by_postfix(
        first, "4ZxB7", "Mon, 7 Dec 2026 10:05:01 +0000 (UTC)",
        "Return-Path: <app@acme.test>\r\n", "Delivered-To: x@example.org\r\n",
        "X-Received: by 2002:a05::1 with SMTP id x; Mon, 7 Dec 2026 10:05:01 +0000\r\n",
        "ARC-Seal: i=1; a=rsa-sha256; t=1; cv=none; d=acme.test; s=a; b=AAAA\r\n",
        "Authentication-Results: mx.acme.test; spf=pass smtp.mailfrom=acme.test\r\n",
    )
    code1, reply1 = await asyncio.to_thread(attempt, relay.smtp_port, first)
    code2, reply2 = await asyncio.to_thread(attempt, relay.smtp_port, retry)
    assert (code1, code2) == (250, 250)
    assert reply2 == reply1  # the first answer: the same message id, nothing sent again
    (got,) = await sink.wait_for(1)
    assert b"id 4ZxA1" in got.content and b"id 4ZxB7" not in got.content
    assert len(await relay.store.db.fetchall("SELECT id FROM messages")) == 1


async def test_a_retry_that_changes_anything_else_is_refused(relay: Running) -> None:
    first = relayed_by_postfix(KEYED, "4ZxA1", "Mon, 7 Dec 2026 10:00:01 +0000 (UTC)")
    changed = first.replace(b"Date: Mon, 7 Dec 2026 10:00:00", b"Date: Mon, 7 Dec 2026 10:00:09")
    code1, _ = await asyncio.to_thread(attempt, relay.smtp_port, first)
    code2, reply2 = await asyncio.to_thread(attempt, relay.smtp_port, changed)
    assert (code1, code2) == (250, 550)
    assert b"Idempotency-Key 'order-42' was used for a different message" in reply2
