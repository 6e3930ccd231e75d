"""The DATA command read by relay/submission/smtp_data.py and by aiosmtpd's own reader
(``[smtp] own_data_reader``): the same content, the same replies, the same rules for the
end of the mail, over a real socket to the running relay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relay.server import Running
from tests.conftest import running, wait_until, write_config
from tests.smtp_helpers import AUTH


@pytest.fixture(params=[True, False], ids=["own-reader", "aiosmtpd-reader"])
async def reader_relay(
    request: pytest.FixtureRequest, settings: dict[str, Any], config_path: Path
) -> AsyncIterator[Running]:
    # Into a Maildir, which keeps every byte (an SMTP upstream would see bare line ends
    # made CRLF by the delivery's client).
    settings["upstream"]["url"] = f"maildir:{config_path.parent / 'outbox'}"
    settings["smtp"]["own_data_reader"] = request.param
    async with running(write_config(config_path, settings)) as relay:
        yield relay


async def delivered(relay: Running, count: int) -> list[bytes]:
    """The copies in the Maildir, without the two envelope lines it adds, oldest first."""
    new = relay.config().path.parent / "outbox" / "new"

    def files() -> list[Path]:
        found = sorted(new.iterdir()) if new.is_dir() else []
        return found if len(found) >= count else []

    return [p.read_bytes().split(b"\r\n", 2)[2] for p in await wait_until(files)]


async def converse(port: int, payload: bytes) -> list[bytes]:
    """Raw bytes after the greeting; the reply lines until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    writer.write(payload)
    await writer.drain()
    replies = b""
    while chunk := await asyncio.wait_for(reader.read(65536), 60):
        replies += chunk
    writer.close()
    await writer.wait_closed()
    return [line for line in replies.split(b"\r\n") if line]


def transaction(data: bytes) -> bytes:
    return (b"MAIL FROM:<app@acme.test>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n" + data
            + b".\r\n")


def session(*transactions: bytes) -> bytes:
    return b"EHLO c\r\nAUTH PLAIN " + AUTH.encode() + b"\r\n" + b"".join(transactions) + b"QUIT\r\n"


async def test_dot_stuffing_and_line_ends(reader_relay: Running) -> None:
    stuffed = (b"Subject: dots\r\n\r\n..leading dot\r\n.\tdot tab\r\n...\r\nbare\nlf\r\n"
               b"cr\ronly\r\nlast")
    replies = await converse(reader_relay.smtp_port, session(transaction(stuffed + b"\r\n")))
    assert sum(b"queued as" in line for line in replies) == 1
    assert await delivered(reader_relay, 1) == [
        b"Subject: dots\r\n\r\n.leading dot\r\n\tdot tab\r\n..\r\nbare\nlf\r\ncr\ronly\r\nlast\r\n"]


async def test_a_bare_lf_dot_does_not_end_the_mail(reader_relay: Running) -> None:
    smuggled = transaction(b"Subject: one\r\n\r\nhello\n.\nMAIL FROM:<x@y>\r\nafter\r\n")
    replies = await converse(reader_relay.smtp_port, session(smuggled, smuggled))
    assert sum(b"queued as" in line for line in replies) == 2
    received = await delivered(reader_relay, 2)
    assert all(b"hello\n.\nMAIL FROM:<x@y>\r\nafter\r\n" in r for r in received)


async def test_long_lines_and_large_mail_get_the_same_replies(reader_relay: Running) -> None:
    # Longer than [smtp] max_line_length (64 KiB by default).
    long_line = transaction(b"Subject: long\r\n\r\n" + b"x" * 70_000 + b"\r\nok\r\n")
    too_big = transaction(b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 2100)  # 2.1 MB
    large = transaction(b"Subject: large\r\n\r\n" + (b".z" * 400 + b"\r\n") * 2000)  # 1.6 MB
    replies = await converse(reader_relay.smtp_port, session(long_line, too_big, large))
    data_replies = [line for line in replies if line[:3] in (b"250", b"500", b"552")
                    and (b"queued" in line or b"Line" in line or b"data" in line)]
    assert [line[:3] for line in data_replies] == [b"500", b"552", b"250"]
    assert await delivered(reader_relay, 1) == [
        b"Subject: large\r\n\r\n" + (b"z" + b".z" * 399 + b"\r\n") * 2000]


async def test_the_end_of_the_mail_split_across_writes(reader_relay: Running) -> None:
    """The terminator and the commands after it, cut at every place and sent in pieces."""
    mail = b"Subject: split\r\n\r\n.a\r\nb\r\n.\r\nRSET\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", reader_relay.smtp_port)
    await reader.readline()
    writer.write(session()[: -len(b"QUIT\r\n")])
    for cut in range(len(mail) - 14, len(mail)):
        writer.write(b"MAIL FROM:<a@acme.test>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n")
        while not (await reader.readline()).startswith(b"354"):
            pass
        for piece in (mail[:cut], mail[cut:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0)
        while not (await reader.readline()).startswith(b"250 2.0.0"):
            pass
        assert (await reader.readline()).startswith(b"250")  # the RSET after it
    writer.close()
    copies = await delivered(reader_relay, 14)
    assert copies == [b"Subject: split\r\n\r\na\r\nb\r\n"] * 14


async def test_an_empty_mail_and_a_line_that_never_ends(reader_relay: Running) -> None:
    endless = b"MAIL FROM:<a@acme.test>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n" + b"z" * 300_000
    replies = await converse(reader_relay.smtp_port,
                             session(transaction(b""), endless + b"\r\n.\r\n"))
    data_replies = [line[:3] for line in replies if b"queued" in line or b"Line" in line]
    assert data_replies == [b"250", b"500"]
    assert await delivered(reader_relay, 1) == [b"\r\n"]  # no header, the blank line
