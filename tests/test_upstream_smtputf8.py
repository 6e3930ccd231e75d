"""The upstream transaction says what the copy needs (docs/mail.md, "Delivery"): SMTPUTF8 for
internationalised addresses and headers, BODY=8BITMIME for 8-bit content, the null sender
as ``<>``; an upstream that cannot take an internationalised address fails the copy at
once, for good."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relay.server import Running, running
from tests.api_helpers import Clients, call, email
from tests.conftest import PROJECT_TOKEN, finished, upstream_at, wait_until, write_config
from tests.sink import Sink

ZOE = "zoë@bücher.example"


def utf8_message(to: str = ZOE, subject: str = "Grüße") -> bytes:
    return (f"From: app@acme.test\r\nTo: {to}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
            "\r\nBonjour, ça va ?\r\n").encode()


def submit(port: int, message: bytes, mail_from: str, rcpt: str,
           options: tuple[str, ...] = ("SMTPUTF8", "BODY=8BITMIME")) -> str:
    """Send as Postfix relays such a mail (SMTPUTF8 and BODY=8BITMIME by default); the
    id the relay queued it as."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        client.login("anything", PROJECT_TOKEN)
        if "SMTPUTF8" in options:
            client.command_encoding = "utf-8"
        code, text = client.mail(mail_from, list(options))
        assert code == 250, text
        code, text = client.rcpt(rcpt)
        assert code == 250, text
        code, text = client.data(message)
        assert code == 250, text
        return text.decode().rsplit(" ", 1)[1]


async def submitted(relay: Running, message: bytes, mail_from: str, rcpt: str,
                    options: tuple[str, ...] = ("SMTPUTF8", "BODY=8BITMIME")) -> str:
    return await asyncio.to_thread(submit, relay.smtp_port, message, mail_from, rcpt, options)


async def test_internationalised_addresses_go_upstream_with_smtputf8(
    relay: Running, sink: Sink
) -> None:
    await submitted(relay, utf8_message(), "zoë@acme.test", ZOE)
    (got,) = await sink.wait_for(1)
    assert (got.mail_from, got.rcpt_tos) == ("zoë@acme.test", (ZOE,))
    assert "SMTPUTF8" in got.mail_options
    assert "BODY=8BITMIME" in got.mail_options
    assert "Bonjour, ça va ?".encode() in got.content
    assert f"To: {ZOE}".encode() in got.content


async def test_eight_bit_content_goes_with_body_8bitmime_only(
    relay: Running, sink: Sink
) -> None:
    await submitted(relay, utf8_message(to="rcpt@example.org", subject="Hello"),
                    "app@acme.test", "rcpt@example.org", ("BODY=8BITMIME",))
    (got,) = await sink.wait_for(1)
    assert "BODY=8BITMIME" in got.mail_options
    assert "SMTPUTF8" not in got.mail_options


async def test_null_sender_is_relayed_as_null(relay: Running, sink: Sink) -> None:
    message_id = await submitted(relay, utf8_message(to="rcpt@example.org"), "<>",
                                 "rcpt@example.org", ("BODY=8BITMIME",))
    (got,) = await sink.wait_for(1)
    assert got.mail_from == "<>"
    assert (await finished(relay, message_id)).status == "delivered"


async def test_send_api_takes_internationalised_addresses(
    relay: Running, sink: Sink, sdk: Clients
) -> None:
    client = sdk()
    answer = await call(client.emails.send, email(to=[f"Zoë <{ZOE}>"]))
    (got,) = await sink.wait_for(1)
    assert got.rcpt_tos == (ZOE,)
    assert "SMTPUTF8" in got.mail_options
    assert (await finished(relay, answer["message_id"])).status == "delivered"


@pytest.fixture
async def ascii_sink() -> AsyncIterator[Sink]:
    s = Sink(smtputf8=False)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
def ascii_upstream(settings: dict[str, Any], ascii_sink: Sink) -> Sink:
    """The relay's upstream does not offer SMTPUTF8."""
    return upstream_at(settings, ascii_sink)


async def test_upstream_without_smtputf8_fails_an_internationalised_copy_at_once(
    ascii_upstream: Sink, relay: Running
) -> None:
    message_id = await submitted(relay, utf8_message(), "app@acme.test", ZOE)
    failed = await finished(relay, message_id)
    assert failed.status == "failed"
    assert "does not offer SMTPUTF8" in (failed.last_error or "")
    assert [a.outcome for a in await relay.store.delivery_attempts(message_id)] == ["permanent"]
    (notice,) = await ascii_upstream.wait_for(1)  # the copy never; its sender is told
    assert (notice.mail_from, notice.rcpt_tos) == ("<>", ("app@acme.test",))
    assert b"Status: 5.6.7" in notice.content


async def test_upstream_without_smtputf8_still_takes_ascii_addresses(
    ascii_upstream: Sink, relay: Running
) -> None:
    await submitted(relay, utf8_message(to="rcpt@example.org", subject="Hello"),
                    "app@acme.test", "rcpt@example.org", ("BODY=8BITMIME",))
    (got,) = await ascii_upstream.wait_for(1)
    assert "SMTPUTF8" not in got.mail_options
    assert "BODY=8BITMIME" in got.mail_options


async def test_null_sender_in_a_maildir_has_an_empty_return_path(
    settings: dict[str, Any], config_path: Path, tmp_path: Path
) -> None:
    settings["upstream"]["url"] = "maildir:outbox"
    async with running(write_config(config_path, settings)) as relay:
        await submitted(relay, utf8_message(to="rcpt@example.org"), "<>", "rcpt@example.org",
                        ("BODY=8BITMIME",))
        new = tmp_path / "outbox" / "new"
        (delivered,) = await wait_until(lambda: new.is_dir() and list(new.iterdir()))
    assert delivered.read_bytes().startswith(b"Return-Path: <>\r\n")


async def test_the_submissions_parameters_are_carried_upstream(
    relay: Running, sink: Sink
) -> None:
    """As the submission used them, even where the copy itself would not need them."""
    ascii_only = (b"From: app@acme.test\r\nTo: rcpt@example.org\r\nSubject: plain\r\n\r\n"
                  b"plain ASCII\r\n")
    await submitted(relay, ascii_only, "app@acme.test", "rcpt@example.org")
    (got,) = await sink.wait_for(1)
    assert "SMTPUTF8" in got.mail_options
    assert "BODY=8BITMIME" in got.mail_options
