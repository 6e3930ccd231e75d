"""Helpers for the hostile-mail tests: a raw SMTP conversation that reports each reply,
and the check that follows every attack (an ordinary mail is relayed, an ordinary click
on it is stored)."""

from __future__ import annotations

import asyncio
import base64
import smtplib
import uuid
from typing import Any

from relay.server import Running
from tests.conftest import PROJECT_TOKEN, send, simple_message, wait_until
from tests.redirecting import K1, click, links_in
from tests.sink import Sink
from tracker.tokens import verify_token

ORDINARY = "https://example.com/ordinary?after=attack"


async def assert_mail_and_clicks_still_work(relay: Running, sink: Sink) -> None:
    subject = f"Ordinary {uuid.uuid4()}"
    html = f'<p><a href="{ORDINARY.replace("&", "&amp;")}">ordinary</a></p>'
    assert await send(relay.smtp_port, simple_message(html, subject=subject)) == {}

    def delivered() -> list[bytes]:
        marker = f"Subject: {subject}".encode()
        return [r.content for r in sink.handler.received if marker in r.content]

    (content,) = await wait_until(delivered)
    (link,) = links_in(content)
    answer = await click(relay, link)
    assert (answer.status, answer.headers["Location"]) == (302, ORDINARY)
    message_id = verify_token(link.rsplit("/c/", 1)[1], [K1]).message_id
    assert len(await relay.store.get_observations(message_id)) == 1


def submit(port: int, message: bytes, rcpts: list[str] | None = None) -> tuple[int, str]:
    """Send one mail with the standard library's client (in a thread); the reply to its
    DATA as (code, text). The server must answer: a dropped connection fails the test."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.test")
        client.login("anything", PROJECT_TOKEN)
        try:
            refused: dict[str, Any] = client.sendmail("app@acme.test",
                                                      rcpts or ["rcpt@example.org"], message)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error.decode("utf-8", "replace")
        assert refused == {}
        return 250, "queued"


async def data_reply(relay: Running, message: bytes, rcpts: list[str] | None = None
                     ) -> tuple[int, str]:
    return await asyncio.to_thread(submit, relay.smtp_port, message, rcpts)


AUTH = base64.b64encode(b"\0user\0" + PROJECT_TOKEN.encode()).decode()
