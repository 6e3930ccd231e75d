"""The DATA command read without holding the event loop (``[smtp] own_data_reader``).

aiosmtpd's reader keeps the right rules, and this one keeps them too: a line ends at CRLF
only and the mail at a line that is a lone ".", so a bare LF cannot end it (no
smuggling); a line longer than ``line_length_limit`` gets ``500``, more data than
``data_size_limit`` gets ``552``, both once the client has sent the end. But aiosmtpd
reads a line at a time in Python (some 0.8 s of CPU for 25 MB, on the event loop), never
gives the loop back while its buffer holds lines (a socket read of 256 KB is some 3000
lines: about 10 ms), and at the end removes the dot-stuffing and joins the lines on the
loop (some 200 ms for 25 MB), while every click waits. This reader takes what has arrived
in blocks of up to 64 KB, checks and unstuffs whole blocks of lines with bytes methods (a
sixth of the CPU), gives the loop back after each block, and joins a large mail in a
thread, where the join lets the loop run.

What comes after the end of the mail (pipelined commands) is put back at the front of the
stream's buffer for aiosmtpd to read: asyncio's StreamReader has no public way to do
that, so ``own_data_reader`` needs its ``_buffer`` (checked when the reader starts; without
it, aiosmtpd's own reader is used).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiosmtpd.smtp import MISSING

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP

log = logging.getLogger("clickrelay.smtp")

BLOCK_BYTES = 64 * 1024  # read at a time; the loop is given back after each block
JOIN_IN_THREAD_BYTES = 1024 * 1024

REPLY_LINE_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
REPLY_TOO_MUCH_DATA = "552 Error: Too much mail data"


def can_read(reader: asyncio.StreamReader) -> bool:
    """Whether this reader can give back what follows the mail (see above)."""
    return isinstance(getattr(reader, "_buffer", None), bytearray)


class _Data:
    """The mail as it is read: whole lines, unstuffed, in blocks; or why it is refused."""

    def __init__(self, size_limit: int | None, line_limit: int) -> None:
        self.size_limit, self.line_limit = size_limit, line_limit
        self.blocks: list[bytes] = []
        self.received = 0
        self.refusal: str | None = None

    def refuse(self, reply: str) -> None:
        if self.refusal is None:  # the first reason, as aiosmtpd
            self.refusal = reply
            self.blocks = []

    def add(self, lines: bytes) -> None:
        """Whole lines (each ending in CRLF), the first at the start of a line."""
        self.received += len(lines)
        if self.size_limit and self.received > self.size_limit:
            self.refuse(REPLY_TOO_MUCH_DATA)
        if max(map(len, lines.split(b"\r\n"))) + 2 > self.line_limit:
            self.refuse(REPLY_LINE_TOO_LONG)
        if self.refusal is None:
            if lines.startswith(b"."):  # RFC 5321 §4.5.2, for every line
                lines = lines[1:]
            self.blocks.append(lines.replace(b"\r\n.", b"\r\n"))

    async def content(self) -> str | bytes:
        if self.refusal is not None:
            return self.refusal
        if sum(map(len, self.blocks)) > JOIN_IN_THREAD_BYTES:
            return await asyncio.to_thread(b"".join, self.blocks)
        return b"".join(self.blocks)


async def read_data(server: SMTP, size_limit: int | None) -> str | bytes:
    """The mail's content, or the reply that refuses it (the client has sent it all)."""
    reader = server._reader
    data = _Data(size_limit, server.line_length_limit)
    partial = b""  # a line not yet ended
    while True:
        block = await reader.read(BLOCK_BYTES)
        if not block:
            await asyncio.sleep(0)  # the connection has closed: the task is cancelled
            raise ConnectionResetError("connection closed during DATA")
        buffered = partial + block
        cut = buffered.rfind(b"\r\n") + 2
        lines, partial = buffered[:cut], buffered[cut:]
        end = _end_of_mail(lines)
        if end is not None:
            unread = lines[end + 3 :] + partial  # pipelined commands after the mail
            reader._buffer[0:0] = unread  # type: ignore[attr-defined]
            if end:
                data.add(lines[:end])
            return await data.content()
        if lines:
            data.add(lines)
        if len(partial) > data.line_limit:
            data.refuse(REPLY_LINE_TOO_LONG)
            partial = partial[-1:]  # it may be the CR of the CRLF that ends the line
        await asyncio.sleep(0)


def _end_of_mail(lines: bytes) -> int | None:
    """Where the line that is a lone "." starts in whole lines, if it is there."""
    if lines.startswith(b".\r\n"):
        return 0
    found = lines.find(b"\r\n.\r\n")
    return found + 2 if found >= 0 else None


async def smtp_data(server: SMTP, arg: str) -> None:
    """aiosmtpd's ``smtp_DATA`` (1.4) with ``read_data`` for its reading loop."""
    if await server.check_helo_needed() or await server.check_auth_needed("DATA"):
        return
    assert server.envelope is not None
    if not server.envelope.rcpt_tos:
        await server.push("503 Error: need RCPT command")
        return
    if arg:
        await server.push("501 Syntax: DATA")
        return
    await server.push("354 End data with <CR><LF>.<CR><LF>")
    try:
        content = await read_data(server, server.data_size_limit)
    except asyncio.CancelledError:
        log.info("connection lost during DATA")
        server._writer.close()
        raise
    if isinstance(content, str):
        await server.push(content)
        server._set_post_data_state()  # type: ignore[no-untyped-call]
        return
    server.envelope.content = server.envelope.original_content = content
    status = await server._call_handler_hook("DATA")
    server._set_post_data_state()  # type: ignore[no-untyped-call]
    await server.push("250 OK" if status is MISSING else status)
