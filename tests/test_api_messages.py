"""What the SDKs call beyond sending, read with the official SDK (docs/api.md): the list
of messages, a message's source, HTML and text (kept until retention purges it), the
names its message gives, one webhook delivery with its payload, and the times of routes
and webhooks, which a reload leaves as they were."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lettermint import APIError, NotFoundError, ValidationError

from relay.api.message_content import body_text
from relay.server import Running
from store.clock import now_us
from tests.api_helpers import Clients, call, read_text, write_text
from tests.api_helpers import email as send_request
from tests.conftest import send, wait_until
from tests.receiver import Receiver, verified
from tests.sink import Sink

# Each test on a SQLite file, then on a PostgreSQL schema of its own.
pytestmark = pytest.mark.usefixtures("both_stores")

SECRET = "whsec_messages_test_0123456789"


@pytest.fixture
def settings(settings: dict[str, Any], receiver: Receiver) -> dict[str, Any]:
    settings["projects"][0]["webhooks"] = [
        {"id": "acme-hook", "url": receiver.url("acme-hook"), "secret": SECRET,
         "events": ["message.clicked"]},
    ]
    return settings


async def sent(sdk: Clients, sink: Sink, **fields: Any) -> str:
    count = len(sink.received)
    answer = await call(sdk().emails.send, send_request(**fields))
    await sink.wait_for(count + len(fields.get("to", [1])))
    return str(answer["message_id"])


async def listed(sdk: Clients, **query: Any) -> list[dict[str, Any]]:
    return await call(lambda: list(sdk().messages.iterate(query)))


async def test_messages_are_listed_filtered_and_paged(sdk: Clients, sink: Sink) -> None:
    first = await sent(sdk, sink, subject="Your receipt", tag="receipts")
    second = await sent(sdk, sink, subject="Weekly news", tag="news",
                        to=["Jane Roe <jane@example.org>", "joe@example.org"])
    page = await call(sdk().messages.list, {"page": {"size": 2}})
    assert len(page["data"]) == 2 and page["next_cursor"]
    everything = await listed(sdk, page={"size": 2})
    assert len(everything) == 3  # one copy per recipient
    assert everything[-1]["id"] == first  # newest first
    assert (await listed(sdk, sort=["created_at"]))[0]["id"] == first
    news = await listed(sdk, filter={"tag": "news"})
    assert {m["to"][0]["email"] for m in news} == {"jane@example.org", "joe@example.org"}
    assert second in {m["id"] for m in news}
    jane = await listed(sdk, filter={"search": "JANE@example"})
    assert [m["to"] for m in jane] == [
        [{"email": "jane@example.org", "name": "Jane Roe", "sandbox_result": None}]]
    assert jane[0]["from_name"] == "Acme" and jane[0]["from_email"] == "sender@acme.test"
    assert [m["id"] for m in await listed(sdk, filter={"subject": "receipt"})] == [first]
    assert await listed(sdk, filter={"status": "hard_bounced"}) == []
    assert await listed(sdk, filter={"type": "inbound"}) == []
    assert len(await listed(sdk, filter={"project": "acme", "route_id": "acme-outgoing"})) == 3
    assert await listed(sdk, filter={"to_date": "2000-01-01"}) == []
    with pytest.raises(ValidationError) as refused:
        await call(sdk().messages.list, {"filter": {"domain_id": "d1"}})
    assert "filter[domain_id]" in str(refused.value)
    with pytest.raises(ValidationError):
        await call(sdk().messages.list, {"sort": ["recipient"]})


async def test_a_message_source_html_and_text(relay: Running, sdk: Clients, sink: Sink) -> None:
    html = '<p>Caf\u00e9 <a href="https://example.com/a">A</a></p>'
    message_id = await sent(sdk, sink, html=html, text="Caf\u00e9, plain https://example.com/a")
    delivered = sink.received[-1].content
    source = await call(sdk().messages.source, message_id)
    assert source.encode() == delivered  # the copy as it went, tracking link and all
    assert "/c/" in await call(sdk().messages.html, message_id)
    assert (await call(sdk().messages.html, message_id)).startswith("<p>Caf\u00e9 <a href=")
    assert (await call(sdk().messages.text, message_id)).rstrip() == (
        "Caf\u00e9, plain https://example.com/a")
    only_text = await sent(sdk, sink, html=None, text="just text")
    with pytest.raises(NotFoundError) as missing:
        await call(sdk().messages.html, only_text)
    assert "no HTML body" in str(missing.value)
    # Kept until retention purges the message.
    await wait_until(lambda: delivered_count(relay, 2))
    await relay.store.purge_expired(now_us() + 1, 0)
    with pytest.raises(NotFoundError):
        await call(sdk().messages.source, message_id)


async def delivered_count(relay: Running, count: int) -> bool:
    return (await relay.store.spool_summary(now_us())).delivered == count


async def test_a_large_message_keeps_its_source_after_delivery(
    relay: Running, sdk: Clients, sink: Sink
) -> None:
    html = '<p><a href="https://example.com/a">A</a></p>' + "<p>filler words</p>\n" * 20_000
    message_id = await sent(sdk, sink, html=html, to=["a@example.org", "b@example.org"])
    await wait_until(lambda: delivered_count(relay, 2))
    (body,) = await relay.store.db.fetchall("SELECT id, data IS NULL FROM bodies")
    # In a file beside a SQLite database; in the database itself on PostgreSQL.
    assert body[1] == (relay.store.db.files_dir is not None)
    source = await call(sdk().messages.source, message_id)
    assert source.encode() in {copy.content for copy in sink.received}


async def test_content_kept_no_more_is_gone(relay: Running, sdk: Clients, sink: Sink) -> None:
    message_id = await sent(sdk, sink)
    await wait_until(lambda: delivered_count(relay, 1))
    # A copy delivered before content was kept for the API: its body was dropped.
    await relay.store.db.write_statement("DELETE FROM bodies")
    with pytest.raises(APIError) as gone:
        await call(sdk().messages.source, message_id)
    assert gone.value.status == 410


async def test_names_come_from_the_message(relay: Running, sdk: Clients, sink: Sink) -> None:
    raw = ("From: =?utf-8?q?Caf=C3=A9=2C_Ltd?= <shop@acme.test>\r\n"
           "To: =?utf-8?q?Roe=2C_Jane?= <rcpt@example.org>, other@example.org\r\n"
           "Cc: Copy Person <cc@example.org>\r\n"
           "Reply-To: help@acme.test\r\n"
           "Subject: Names\r\n\r\nHello\r\n")
    await send(relay.smtp_port, raw, rcpts=["rcpt@example.org", "cc@example.org",
                                            "bcc@example.org"])
    await sink.wait_for(3)
    by_rcpt = {m["to"][0]["email"]: m for m in await listed(sdk)}
    assert {r: m["to"][0]["name"] for r, m in by_rcpt.items()} == {
        "rcpt@example.org": "Roe, Jane", "cc@example.org": "Copy Person",
        "bcc@example.org": None}
    message = await call(sdk().messages.retrieve, by_rcpt["rcpt@example.org"]["id"])
    assert message["from_name"] == "Caf\u00e9, Ltd" and message["reply_to"] == ["help@acme.test"]


async def test_one_webhook_delivery_with_its_payload(
    sdk: Clients, receiver: Receiver
) -> None:
    queued = await call(sdk().webhooks.test, "acme-hook")
    await wait_until(lambda: receiver.to("acme-hook"))
    sent_payload = verified(receiver.to("acme-hook")[0], SECRET)

    async def finished() -> dict[str, Any] | None:
        found = await call(sdk().webhooks.deliveries.retrieve, "acme-hook",
                           queued["delivery_id"])
        return found if found["status"] == "success" else None

    delivery = await wait_until(finished)
    assert delivery["payload"] == sent_payload
    assert delivery["event_type"] == "webhook.test" and delivery["http_status_code"] == 200
    assert delivery["timestamp"] == delivery["created_at"] and delivery["delivered_at"]
    with pytest.raises(NotFoundError):
        await call(sdk().webhooks.deliveries.retrieve, "acme-hook", "no-such-delivery")


async def test_route_and_webhook_times_survive_reloads(
    relay: Running, sdk: Clients, config_path: Path
) -> None:
    news = await call(sdk().routes.retrieve, "acme-news")
    outgoing = await call(sdk().routes.retrieve, "acme-outgoing")
    hook = await call(sdk().webhooks.retrieve, "acme-hook")
    # The file is saved again unchanged, then with a change to one route only.
    await write_text(config_path, await read_text(config_path))
    assert await relay.config.reload()
    text = await read_text(config_path)
    await write_text(config_path, text.replace('slug = "news"', 'slug = "newsletter"'))
    assert await relay.config.reload()
    assert await call(sdk().routes.retrieve, "acme-outgoing") == outgoing
    assert (await call(sdk().webhooks.retrieve, "acme-hook"))["updated_at"] == hook["updated_at"]
    renamed = await call(sdk().routes.retrieve, "acme-news")
    assert renamed["slug"] == "newsletter" and renamed["created_at"] == news["created_at"]
    rows = dict(await relay.store.db.fetchall(
        "SELECT id, updated_at > created_at FROM config_items WHERE kind = 'route'"))
    assert rows == {"acme/acme-news": 1, "acme/acme-outgoing": 0, "acme/acme-inbound": 0,
                    "other/other-main": 0}


def test_html_and_text_are_the_bodies_a_reader_sees() -> None:
    raw = (b"Subject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
           b"--b\nContent-Type: multipart/alternative; boundary=a\n\n"
           b"--a\nContent-Type: text/plain; charset=x-unknown\n\nplain \xff\n"
           b"--a\nContent-Type: text/html; charset=utf-8\n"
           b"Content-Transfer-Encoding: base64\n\nPHA+aGk8L3A+\n--a--\n"
           b"--b\nContent-Type: text/html\nContent-Disposition: attachment\n\n<p>att</p>\n"
           b"--b--\n")
    assert body_text(raw, "html") == "<p>hi</p>"
    assert body_text(raw, "plain") == "plain \ufffd"
    assert body_text(b"Subject: x\n\n", "html") is None
