"""SMTP submission (docs/mail.md): aiosmtpd on the shared event loop, AUTH against project
tokens (slowed per source network across connections, relay/throttle.py), the envelope
limits, and ``handle_DATA`` handing the mail to the submission steps. The reply is 250
only once every copy is spooled on disk."""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
import warnings
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from relay.config.load import Config
from relay.errors import (
    REPLY_AUTH_THROTTLED,
    REPLY_NO_RECIPIENTS,
    REPLY_QUEUED,
    REPLY_TOO_MANY_RECIPIENTS,
    smtp_reply,
)
from relay.submission.accept import Submitter
from relay.submission.smtp_data import can_read, smtp_data
from relay.throttle import MAX_SPACING, Throttle, source_network
from tracker.clicks.network import parse_address
from tracker.metrics import Metrics

log = logging.getLogger("clickrelay.smtp")

class SubmissionHandler:
    def __init__(self, config: Callable[[], Config], submitter: Submitter, metrics: Metrics,
                 throttle: Throttle | None = None):
        self._config = config
        self._submitter = submitter
        self._metrics = metrics
        self.throttle = throttle if throttle is not None else Throttle()

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """AUTH PLAIN/LOGIN: the password is a project token; the user name is not used.
        While the client's network must wait (relay/throttle.py), the password is not
        checked at all: 454, try again later."""
        keys = _auth_keys(session)
        wait = self.throttle.wait(keys)
        if wait > 0:
            self._metrics.auth_throttled.labels("smtp").inc()
            return AuthResult(success=False, handled=False,
                              message=REPLY_AUTH_THROTTLED.format(seconds=math.ceil(wait)))
        project = None
        if isinstance(data, LoginPassword):
            password = data.password.decode("utf-8", "replace")
            project = self._config().project_by_token(password)
        if project is None:
            self.throttle.failed(keys)
            self._metrics.auth_failures.inc()
            log.info("smtp auth failed mechanism=%s", mechanism)
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=project.id)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        limit = self._config().smtp.max_recipients
        if len(envelope.rcpt_tos) >= limit:
            self._metrics.mail_refused.labels("452").inc()
            return REPLY_TOO_MANY_RECIPIENTS.format(limit=limit)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        config = self._config()
        project = config.project_by_id(str(session.auth_data))
        if project is None or not envelope.rcpt_tos:
            self._metrics.mail_refused.labels("554").inc()
            return REPLY_NO_RECIPIENTS if project else "451 4.3.0 Project no longer configured"
        raw = envelope.original_content or b""
        started = time.monotonic()
        try:
            accepted = await self._submitter.accept(
                project, envelope.mail_from or "", list(envelope.rcpt_tos), raw,
                mail_params=envelope.mail_options,
            )
        except Exception as exc:  # every failure becomes a reply, never a 250
            reply = smtp_reply(exc)
            self._metrics.mail_refused.labels(reply[:3]).inc()
            if reply.startswith("451"):
                log.exception("submission failed project=%s", project.id)
            else:
                log.info("submission refused project=%s reply=%s", project.id, reply)
            return reply
        finally:
            self._metrics.submission_seconds.observe(time.monotonic() - started)
        log.info("queued project=%s submission=%s copies=%d", project.id,
                 accepted.submission_id, len(accepted.message_ids))
        return REPLY_QUEUED.format(ids=" ".join(accepted.message_ids))


class SubmissionSMTP(SMTP):
    """aiosmtpd's SMTP that, before an AUTH, waits until its network's next check is due
    (a patient client is then checked rather than told to try again), and that reads DATA
    without holding the event loop (relay/submission/smtp_data.py)."""

    async def smtp_AUTH(self, arg: str) -> None:
        handler = self.event_handler
        if isinstance(handler, SubmissionHandler) and self.session is not None:
            delay = handler.throttle.wait(_auth_keys(self.session))
            if delay > 0:
                await asyncio.sleep(min(delay, MAX_SPACING))
        await super().smtp_AUTH(arg)

    own_data_reader = True  # [smtp] own_data_reader: relay/submission/smtp_data.py reads DATA

    def __init__(self, *args: Any, line_length_limit: int = SMTP.line_length_limit,
                 **kwargs: Any) -> None:
        # [smtp] max_line_length: real mail has lines longer than RFC 5321's 1000 octets
        # (Postfix takes them); they go upstream short again (relay/message/mime.py). Set
        # before aiosmtpd makes its stream reader, whose limit it is too.
        self.line_length_limit = line_length_limit
        super().__init__(*args, **kwargs)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if self.own_data_reader and can_read(self._reader):
            await smtp_data(self, arg)
        else:
            await super().smtp_DATA(arg)


def tls_context(config: Config) -> ssl.SSLContext | None:
    if config.smtp.tls_cert is None or config.smtp.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(config.smtp.tls_cert), str(config.smtp.tls_key))
    return context


def protocol_factory(
    config: Config, handler: SubmissionHandler, *, implicit_tls: bool = False
) -> Callable[[], SMTP]:
    """Builds the aiosmtpd protocol for one listener. On the implicit-TLS listener the
    connection is already encrypted, so AUTH is allowed there even when
    ``auth_require_tls`` is set."""
    context = tls_context(config)
    smtp = config.smtp

    def factory() -> SMTP:
        # aiosmtpd warns on every connection when AUTH is allowed without TLS; that choice
        # is the operator's (auth_require_tls) and `serve` says so once at start-up.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return _make()

    def _make() -> SMTP:
        server = SubmissionSMTP(
            handler,
            data_size_limit=smtp.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=smtp.hostname,
            ident="clickrelay",
            tls_context=None if implicit_tls else context,
            auth_required=True,
            auth_require_tls=smtp.auth_require_tls and not implicit_tls,
            authenticator=handler.authenticate,
            timeout=300,
            line_length_limit=smtp.max_line_length,
        )
        server.own_data_reader = smtp.own_data_reader
        return server

    return factory


def _auth_keys(session: Session) -> tuple[str]:
    """The throttle's keys of an AUTH: the client's network."""
    peer = session.peer
    host = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
    return (source_network(parse_address(host)),)
