"""Where delivered mail goes: an upstream SMTP server (aiosmtplib) or a local Maildir.

Failures are sorted here, once: a 4xx reply, a refused or broken connection or a
timeout is temporary; a 5xx reply is permanent (RFC 5321 §4.2.1)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Protocol

import aiosmtplib

from relay.config import UpstreamConfig
from relay.errors import UpstreamPermanent, UpstreamTemporary


class Upstream(Protocol):
    async def deliver(self, mail_from: str, rcpt_to: str, body: bytes) -> str:
        """Hand one copy on; returns the upstream's answer, raises ``UpstreamError``."""
        ...


def make_upstream(config: UpstreamConfig, local_hostname: str) -> Upstream:
    if config.scheme == "maildir":
        assert config.maildir is not None
        return MaildirUpstream(config.maildir)
    return SmtpUpstream(config, local_hostname)


class SmtpUpstream:
    def __init__(self, config: UpstreamConfig, local_hostname: str) -> None:
        self._config = config
        self._local_hostname = local_hostname

    async def deliver(self, mail_from: str, rcpt_to: str, body: bytes) -> str:
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
        )
        try:
            async with client:
                errors, reply = await client.sendmail(mail_from, [rcpt_to], body)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            raise _by_code(refused.code, refused.message) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _by_code(exc.code, exc.message) from exc
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            raise UpstreamTemporary(f"{type(exc).__name__}: {exc}") from exc
        if errors:
            code, message = next(iter(errors.values()))
            raise _by_code(code, message)
        return reply


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

    async def deliver(self, mail_from: str, rcpt_to: str, body: bytes) -> str:
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
        envelope = (
            b"Return-Path: <" + mail_from.encode("utf-8", "replace") + b">" + eol
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
