"""Hostile SMTP input: the server keeps running, answers each abuse clearly, and never
turns one transaction into two (SMTP smuggling)."""

from __future__ import annotations

import asyncio
import base64

from relay.server import Running
from tests.conftest import PROJECT_TOKEN, send
from tests.sink import Sink

AUTH = base64.b64encode(b"\0user\0" + PROJECT_TOKEN.encode()).decode()


async def _converse(port: int, payload: bytes) -> bytes:
    """Write raw bytes after the greeting and read every reply until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    writer.write(payload)
    await writer.drain()
    replies = b""
    while chunk := await asyncio.wait_for(reader.read(65536), 30):
        replies += chunk
    writer.close()
    await writer.wait_closed()
    return replies


async def test_smuggled_second_transaction_after_bare_lf_dot_is_not_accepted(
    relay: Running, sink: Sink
) -> None:
    payload = (
        b"EHLO client.test\r\n"
        b"AUTH PLAIN " + AUTH.encode() + b"\r\n"
        b"MAIL FROM:<app@acme.test>\r\nRCPT TO:<rcpt@example.org>\r\nDATA\r\n"
        b"From: app@acme.test\r\nSubject: first\r\n\r\nhello\n.\r\n"
        b"MAIL FROM:<admin@acme.test>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
        b"From: admin@acme.test\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n"
        b"QUIT\r\n"
    )
    replies = await _converse(relay.smtp_port, payload)
    assert replies.count(b"queued as") == 1
    rows = await relay.store.db.fetchall("SELECT rcpt_to FROM messages")
    assert [r[0] for r in rows] == ["rcpt@example.org"]
    received = await sink.wait_for(1)
    assert [r.rcpt_tos for r in received] == [("rcpt@example.org",)]
    assert b"smuggled" in received[0].content  # it stayed inside the first message


async def test_garbage_commands_get_errors_and_the_server_survives(relay: Running) -> None:
    payload = (
        b"HELLO?\r\n" + b"\xff\xfe\x00garbage\r\n" + b"A" * 5000 + b"\r\n"
        b"MAIL FROM:<x@y>\r\n"  # before EHLO and AUTH
        b"RCPT TO:<x@y>\r\nDATA\r\nQUIT\r\n"
    )
    replies = await _converse(relay.smtp_port, payload)
    codes = [line[:3] for line in replies.split(b"\r\n") if line]
    assert codes[-1] == b"221"
    assert b"250" not in codes[:-1] or b"queued" not in replies
    assert all(c[:1] in (b"2", b"5") for c in codes)
    assert await send(relay.smtp_port, _message(b"Subject: still alive\r\n")) == {}


def _message(headers: bytes) -> bytes:
    return headers + b"\r\n<p>body</p>\r\n"


async def test_messages_with_odd_headers_are_relayed(relay: Running, sink: Sink) -> None:
    await send(relay.smtp_port, b"no headers at all, just a body line\r\n")
    await send(relay.smtp_port, _message("Subject: Grüße 8-bit\r\n".encode()))
    await send(relay.smtp_port, b"From: a@b\nSubject: bare LF line ends\n\n<a href=x>y</a>\n")
    received = await sink.wait_for(3)
    assert len(received) == 3


async def test_pipelined_transactions_all_get_replies(relay: Running, sink: Sink) -> None:
    one = (b"MAIL FROM:<app@acme.test>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n"
           b"Subject: pipelined\r\n\r\nbody\r\n.\r\n")
    payload = b"EHLO c\r\nAUTH PLAIN " + AUTH.encode() + b"\r\n" + one * 3 + b"QUIT\r\n"
    replies = await _converse(relay.smtp_port, payload)
    assert replies.count(b"queued as") == 3
    await sink.wait_for(3)
