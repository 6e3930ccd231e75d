"""The DATA command read without holding the event loop (``[smtp] own_data_reader``).

aiosmtpd's reader keeps the right rules, and this one keeps them line for line: a line
ends at CRLF only and the mail at a line that is a lone ".", so a bare LF cannot end it
(no smuggling); a line longer than ``line_length_limit`` gets ``500``, more data than
``data_size_limit`` gets ``552``, both once the client has sent the end. But aiosmtpd
never gives the loop back while its buffer holds lines (a socket read of 256 KB is some
3000 lines: about 10 ms), and at the end it removes the dot-stuffing and joins the lines
on the loop (some 200 ms for 25 MB), while every click waits. This reader gives the loop
back every ``YIELD_BYTES``, removes the stuffing line by line as it reads, gathers lines
into blocks, and joins a large mail in a thread, where the join lets the loop run.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiosmtpd.smtp import MISSING

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP

log = logging.getLogger("clickrelay.smtp")

YIELD_BYTES = 16 * 1024  # read between two turns given back to the event loop
BLOCK_BYTES = 64 * 1024  # lines are gathered into blocks of about this size
JOIN_IN_THREAD_BYTES = 1024 * 1024

REPLY_LINE_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
REPLY_TOO_MUCH_DATA = "552 Error: Too much mail data"


class _Lines:
    """The lines of the mail as they are read: unstuffed, gathered into blocks."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []
        self.block: list[bytes] = []
        self.size = 0

    def add(self, line: bytes) -> None:
        if line.startswith(b"."):  # RFC 5321 §4.5.2
            line = line[1:]
        self.block.append(line)
        self.size += len(line)
        if self.size >= BLOCK_BYTES:
            self.blocks.append(b"".join(self.block))
            self.block, self.size = [], 0

    def discard(self) -> None:
        self.blocks, self.block, self.size = [], [], 0

    async def content(self) -> bytes:
        self.blocks.append(b"".join(self.block))
        if sum(map(len, self.blocks)) > JOIN_IN_THREAD_BYTES:
            return await asyncio.to_thread(b"".join, self.blocks)
        return b"".join(self.blocks)


async def read_data(server: SMTP, size_limit: int | None) -> str | bytes:
    """The mail's content, or the reply that refuses it (the client has sent it all)."""
    reader = server._reader
    lines = _Lines()
    fragments: list[bytes] = []
    received = since_yield = 0
    refusal: str | None = None
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError as exc:  # a line longer than the reader's limit
            refusal = refusal or REPLY_LINE_TOO_LONG
            lines.discard()
            line = await reader.read(exc.consumed)
        if not fragments and line == b".\r\n":
            break
        received += len(line)
        if refusal is None and size_limit and received > size_limit:
            refusal = REPLY_TOO_MUCH_DATA
            lines.discard()
        fragments.append(line)
        if line.endswith(b"\r\n"):
            if refusal is None:
                whole = line if len(fragments) == 1 else b"".join(fragments)
                if len(whole) > server.line_length_limit:
                    refusal = REPLY_LINE_TOO_LONG
                    lines.discard()
                else:
                    lines.add(whole)
            fragments = []
        since_yield += len(line)
        if since_yield >= YIELD_BYTES:
            since_yield = 0
            await asyncio.sleep(0)
    return refusal if refusal is not None else await lines.content()


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
