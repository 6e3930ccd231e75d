"""Where delivered mail goes: an upstream SMTP server (aiosmtplib) or a local Maildir.

Failures are sorted here, once: a 4xx reply, a refused or broken connection or a
timeout is temporary; a 5xx reply is permanent (RFC 5321 §4.2.1). The DATA of a copy is
made ready in a thread, one copy at a time, and written a slice per turn of the loop:
aiosmtplib's sendmail prepares it with regular expressions on the event loop (half a
second for a copy of 25 MB, while every click waits; docs/performance.md)."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiosmtplib
from aiosmtplib.email import quote_address

from relay.config.load import UpstreamConfig
from relay.delivery.tls import certificate_refusal, tls_context
from relay.errors import UpstreamPermanent, UpstreamTemporary


class Upstream(Protocol):
    async def deliver(self, mail_from: str, rcpt_to: str, body: bytes,
                      mail_params: Sequence[str] = ()) -> str:
        """Hand one copy on; returns the upstream's answer, raises ``UpstreamError``.
        ``mail_params``: what the submission's MAIL declared (``carried_params``)."""
        ...


# The submission's MAIL parameters that its copies' transactions declare again (RFC 6531,
# RFC 6152), when the upstream offers them; the copy's own content may need them too.
CARRIED_PARAMS = ("SMTPUTF8", "BODY=8BITMIME")


def carried_params(mail_options: Sequence[str]) -> tuple[str, ...]:
    """Of a MAIL command's parameters, those the upstream transaction carries on."""
    given = {option.upper() for option in mail_options}
    return tuple(p for p in CARRIED_PARAMS if p in given)


def make_upstream(config: UpstreamConfig, local_hostname: str) -> Upstream:
    if config.scheme == "maildir":
        assert config.maildir is not None
        return MaildirUpstream(config.maildir)
    return SmtpUpstream(config, local_hostname)


class SmtpUpstream:
    def __init__(self, config: UpstreamConfig, local_hostname: str) -> None:
        self._config = config
        self._local_hostname = local_hostname
        self._preparing = asyncio.Semaphore(1)
        self._tls = tls_context(config)

    async def deliver(self, mail_from: str, rcpt_to: str, body: bytes,
                      mail_params: Sequence[str] = ()) -> str:
        c = self._config
        client = aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            username=c.username,
            password=c.password,
            local_hostname=self._local_hostname,
            timeout=c.timeout_seconds,
            use_tls=c.scheme == "smtps",
            # smtp:// upgrades when offered (opportunistic, unverified as RFC 7435 allows);
            # smtp+starttls:// insists on it and verifies the certificate.
            start_tls=True if c.scheme == "smtp+starttls" else None,
            validate_certs=c.scheme != "smtp",
            tls_context=self._tls,
        )
        async with self._preparing:  # one at a time: each thread more delays the loop's GIL
            data, envelope = await asyncio.to_thread(_prepare, mail_from, rcpt_to, body,
                                                     mail_params)
        try:
            async with client:
                return await _transaction(client, envelope, data, c.timeout_seconds,
                                          tls=c.scheme != "smtp")
        except aiosmtplib.SMTPResponseException as exc:
            raise _by_code(exc.code, exc.message) from exc
        except UpstreamPermanent:
            raise
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            refused = certificate_refusal(exc)
            if refused is not None:
                raise refused from exc
            raise UpstreamTemporary(f"{type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class Envelope:
    """One copy's envelope and what its transaction must declare (RFC 6531, RFC 6152)."""

    mail_from: str  # "<>" (or "") for the null sender
    rcpt_to: str
    size: int
    utf8_addresses: bool  # an address is not ASCII: only SMTPUTF8 can carry it
    utf8_headers: bool  # the header block holds UTF-8 (RFC 6532), or the submission said so
    eight_bit: bool  # a byte of the message is over 127, or the submission said so

    @classmethod
    def of(cls, mail_from: str, rcpt_to: str, body: bytes, size: int,
           mail_params: Sequence[str] = ()) -> Envelope:
        """What the copy needs: what its submission declared, and what its bytes need."""
        header_end = body.find(b"\n\r\n")
        if header_end < 0:
            header_end = body.find(b"\n\n")
        headers = body if header_end < 0 else body[:header_end]
        return cls(mail_from, rcpt_to, size,
                   utf8_addresses=not (mail_from.isascii() and rcpt_to.isascii()),
                   utf8_headers="SMTPUTF8" in mail_params or not headers.isascii(),
                   eight_bit="BODY=8BITMIME" in mail_params or not body.isascii())

    def mail_options(self, offers: Callable[[str], bool]) -> list[str]:
        """The MAIL parameters for an upstream that ``offers`` the named extensions; an
        address that needs SMTPUTF8 where it is not offered is a permanent failure (the
        upstream will never offer it for this copy)."""
        options = [f"size={self.size}"] if offers("size") else []
        if self.eight_bit and offers("8bitmime"):
            options.append("BODY=8BITMIME")
        if self.utf8_addresses and not offers("smtputf8"):
            raise UpstreamPermanent(
                "the upstream does not offer SMTPUTF8, and an address of this copy is not "
                f"ASCII ({self.mail_from or '<>'} to {self.rcpt_to}): it cannot be sent there",
                status="5.6.7")  # RFC 6531 §3.5
        if (self.utf8_addresses or self.utf8_headers) and offers("smtputf8"):
            options.append("SMTPUTF8")
        return options


async def _transaction(
    client: aiosmtplib.SMTP, envelope: Envelope, data: bytes, timeout: float, *, tls: bool
) -> str:
    """MAIL, RCPT and DATA, as aiosmtplib's sendmail does them, with the DATA ready; the
    null sender goes as ``<>``, which aiosmtplib's ``mail`` refuses."""
    if client.is_ehlo_or_helo_needed:  # again after STARTTLS (RFC 3207 §4.2), as ``mail`` does
        await _greet(client, tls)
    options = envelope.mail_options(client.supports_extension)
    encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
    sender = b"<>" if is_null_sender(envelope.mail_from) else _quoted(envelope.mail_from,
                                                                       encoding)
    reply = await client.execute_command(
        b"MAIL", b"FROM:" + sender, *(o.encode("ascii") for o in options))
    if reply.code != 250:
        raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, envelope.mail_from)
    reply = await client.execute_command(b"RCPT", b"TO:" + _quoted(envelope.rcpt_to, encoding))
    if reply.code not in (250, 251):
        raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, envelope.rcpt_to)
    start = await client.execute_command(b"DATA")
    if start.code != 354:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("connection lost")
    for at in range(0, len(data), WRITE_SLICE):  # the loop copies a large copy in turns
        protocol.write(data[at : at + WRITE_SLICE])
        await asyncio.sleep(0)
    reply = await protocol.read_response(timeout=timeout)
    if reply.code != 250:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    return reply.message


NULL_SENDER = "<>"  # how aiosmtpd gives MAIL FROM:<>, and how the spool keeps it


async def _greet(client: aiosmtplib.SMTP, tls: bool) -> None:
    """EHLO (HELO if refused). An upstream that wants a client certificate it did not get
    says so, under TLS 1.3, only by closing the connection at the first read after the
    handshake: that is told, as a temporary failure (it may be any other drop)."""
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        await client.helo()
    except aiosmtplib.SMTPServerDisconnected as exc:
        if not tls:
            raise
        raise UpstreamTemporary(
            f"{exc}: the upstream closed the connection after STARTTLS; if it asks for a "
            "client certificate, set [upstream] tls_client_cert (and tls_client_key)") from exc


def is_null_sender(mail_from: str) -> bool:
    """``MAIL FROM:<>`` (RFC 5321 §4.5.5): a notification, never to be answered; the API
    never makes one."""
    return mail_from in ("", NULL_SENDER)


def _prepare(mail_from: str, rcpt_to: str, body: bytes, mail_params: Sequence[str]
             ) -> tuple[bytes, Envelope]:
    data, size = wire_data(body)
    return data, Envelope.of(mail_from, rcpt_to, body, size, mail_params)


def _quoted(address: str, encoding: str) -> bytes:
    """``<address>``; an address that cannot be put on a command line is permanent."""
    try:
        return quote_address(address).encode(encoding)
    except (ValueError, UnicodeEncodeError) as exc:
        raise UpstreamPermanent(f"the address {address!r} cannot be sent: {exc}",
                                status="5.1.3") from exc


_LINE_ENDINGS = re.compile(rb"(?:\r\n|\n|\r(?!\n))")
WIRE_SLICE = 1024 * 1024  # bytes worked on at once: the GIL is let go between slices
WRITE_SLICE = 256 * 1024  # bytes handed to the transport in one turn of the loop


def wire_data(body: bytes) -> tuple[bytes, int]:
    """``body`` as DATA puts it on the wire (RFC 5321 §4.5.2: CRLF line ends, a leading
    dot doubled, the terminating line), exactly as aiosmtplib makes it, and its size
    before the dots (the SIZE parameter). A slice at a time, each ending after an LF, so
    that another thread waits a short while for the GIL at most; a slice whose line ends
    are all CRLF already (as SMTP brought them) needs no regular expression."""
    out, size, pos = [], 0, 0
    while pos < len(body):
        cut = body.find(b"\n", min(pos + WIRE_SLICE, len(body)) - 1)
        end = len(body) if cut < 0 else cut + 1
        lines = body[pos:end]
        crlf = lines.count(b"\r\n")
        if lines.count(b"\r") != crlf or lines.count(b"\n") != crlf:
            lines = _LINE_ENDINGS.sub(b"\r\n", lines)
        size += len(lines)
        # Every slice starts a line: the dot of its first line, then the others'.
        out.append(b"." * lines.startswith(b".") + lines.replace(b"\n.", b"\n.."))
        pos = end
    if not body.endswith((b"\r\n", b"\n", b"\r")):
        out.append(b"\r\n")
        size += 2
    out.append(b".\r\n")
    return b"".join(out), size


def _by_code(code: int, message: str) -> UpstreamTemporary | UpstreamPermanent:
    text = f"{code} {message}".strip()
    if 500 <= code < 600:
        return UpstreamPermanent(text, code)
    return UpstreamTemporary(text, code)


class MaildirUpstream:
    """Delivery into a Maildir (the maildir(5) tmp → new protocol), fsynced before the
    copy counts as delivered."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def deliver(self, mail_from: str, rcpt_to: str, body: bytes,
                      mail_params: Sequence[str] = ()) -> str:
        try:
            name = await asyncio.to_thread(self._write, mail_from, rcpt_to, body)
        except OSError as exc:
            raise UpstreamTemporary(f"maildir {self.path}: {exc}") from exc
        return f"250 delivered to maildir as {name}"

    def _write(self, mail_from: str, rcpt_to: str, body: bytes) -> str:
        for sub in ("tmp", "new", "cur"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}.{uuid.uuid4().hex}.{socket.gethostname()}"
        tmp = self.path / "tmp" / name
        eol = b"\r\n" if b"\r\n" in body[:2048] else b"\n"
        sender = "" if is_null_sender(mail_from) else mail_from
        envelope = (
            b"Return-Path: <" + sender.encode("utf-8", "replace") + b">" + eol
            + b"Delivered-To: " + rcpt_to.encode("utf-8", "replace") + eol
        )
        with open(tmp, "xb") as f:
            f.write(envelope)
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.path / "new" / name)
        dir_fd = os.open(self.path / "new", os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return name
