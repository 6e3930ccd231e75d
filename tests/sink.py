"""A real upstream SMTP server for tests: records every envelope it accepts and can be
scripted to answer 4xx/5xx at MAIL, RCPT or DATA, or to drop the connection."""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    mail_options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fault:
    stage: str  # MAIL | RCPT | DATA
    reply: str | None  # None: drop the connection


# What an MTA that requires SMTPUTF8 answers a non-ASCII address without it (RFC 6531 §3.5).
REPLY_SMTPUTF8_REQUIRED = "553 5.6.7 SMTPUTF8 is required for a non-ASCII address"


class SinkHandler:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.faults: deque[Fault] = deque()
        self.attempts = 0
        self._changed = asyncio.Condition()

    def _fault(self, stage: str, server: SMTP) -> str | None:
        if self.faults and self.faults[0].stage == stage:
            fault = self.faults.popleft()
            if fault.reply is None:
                assert server.transport is not None
                server.transport.abort()
                return "421 4.4.2 connection dropped"
            return fault.reply
        return None

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        self.attempts += 1
        reply = self._fault("MAIL", server)
        if reply:
            return reply
        if not address.isascii() and "SMTPUTF8" not in options:
            return REPLY_SMTPUTF8_REQUIRED
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, options: list[str]) -> str:
        reply = self._fault("RCPT", server)
        if reply:
            return reply
        if not address.isascii() and "SMTPUTF8" not in envelope.mail_options:
            return REPLY_SMTPUTF8_REQUIRED
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._fault("DATA", server)
        if reply:
            return reply
        content = envelope.original_content or b""
        async with self._changed:
            self.received.append(
                Received(envelope.mail_from or "", tuple(envelope.rcpt_tos), content,
                         tuple(envelope.mail_options))
            )
            self._changed.notify_all()
        return "250 2.0.0 OK sink"

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Wait until ``count`` messages have arrived (a guard against hanging, not a
        timed assertion)."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.received) >= count), timeout
            )
        return list(self.received)


class Sink:
    """``smtputf8``: whether its EHLO offers SMTPUTF8 (when it does, a non-ASCII address
    without it is refused, as real MTAs do). With ``tls``, it offers STARTTLS with that
    context and takes no mail without it."""

    def __init__(self, *, smtputf8: bool = True, tls: ssl.SSLContext | None = None) -> None:
        self.handler = SinkHandler()
        self.smtputf8 = smtputf8
        self.tls = tls
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: SMTP(self.handler, enable_SMTPUTF8=self.smtputf8, decode_data=False,
                         hostname="sink.test", tls_context=self.tls,
                         require_starttls=self.tls is not None),
            "127.0.0.1",
            port,
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    def fail(self, stage: str, reply: str | None, times: int = 1) -> None:
        for _ in range(times):
            self.handler.faults.append(Fault(stage, reply))

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        return await self.handler.wait_for(count, timeout)
