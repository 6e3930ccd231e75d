"""Control headers, routes and the per-email tracking override (docs/mail.md)."""

from __future__ import annotations

import re
import smtplib

import pytest

from relay.server import Running
from tests.conftest import send, simple_message
from tests.sink import Sink

TRACKED = re.compile(rb'href="http://pacme1\.t\.localhost:8080/c/[A-Za-z0-9_.-]+"')


async def _one(relay: Running, sink: Sink, headers: str) -> bytes:
    await send(relay.smtp_port, simple_message(headers=headers))
    return (await sink.wait_for(1))[0].content


async def test_control_headers_are_removed_and_others_kept(relay: Running, sink: Sink) -> None:
    headers = (
        "X-LM-Tag: welcome\r\n"
        "X-LM-Metadata-user-id: 42\r\n"
        "X-LM-Override-Track-Opens: false\r\n"
        "X-LM-Something-New: kept out\r\n"
        "X-Lettermint-Route: outgoing\r\n"
        "X-Lettermint-Whatever: x\r\n"
        "Idempotency-Key: abc\r\n"
        "X-Custom: stays\r\n"
    )
    content = await _one(relay, sink, headers)
    head = content.split(b"\r\n\r\n", 1)[0].lower()
    assert b"x-lm-" not in head
    assert b"x-lettermint-" not in head
    assert b"idempotency-key" not in head
    assert b"x-custom: stays" in head
    assert b"to: rcpt <rcpt@example.org>" in head


async def test_default_route_tracks(relay: Running, sink: Sink) -> None:
    content = await _one(relay, sink, "")
    assert TRACKED.search(content)
    assert b"https://example.com/a" in content  # the text part is untouched


async def test_override_false_beats_a_tracking_route(relay: Running, sink: Sink) -> None:
    content = await _one(relay, sink, "X-LM-Override-Track-Clicks: false\r\n")
    assert not TRACKED.search(content)
    assert b'href="https://example.com/a"' in content


async def test_override_true_beats_an_untracked_route(relay: Running, sink: Sink) -> None:
    headers = "X-Lettermint-Route: news\r\nX-LM-Override-Track-Clicks: true\r\n"
    content = await _one(relay, sink, headers)
    assert TRACKED.search(content)


async def test_untracked_route_without_override(relay: Running, sink: Sink) -> None:
    content = await _one(relay, sink, "X-Lettermint-Route: news\r\n")
    assert not TRACKED.search(content)


async def test_inbound_route_never_tracks_even_with_override(relay: Running, sink: Sink) -> None:
    headers = "X-Lettermint-Route: inbound\r\nX-LM-Override-Track-Clicks: true\r\n"
    content = await _one(relay, sink, headers)
    assert not TRACKED.search(content)


async def test_unknown_route_is_refused_naming_it(relay: Running, sink: Sink) -> None:
    with pytest.raises(smtplib.SMTPDataError) as info:
        await send(relay.smtp_port, simple_message(headers="X-Lettermint-Route: nope\r\n"))
    assert info.value.smtp_code == 550
    assert b"nope" in info.value.smtp_error
    assert sink.received == []


@pytest.mark.parametrize("value", ["yes", "1", "", "TRUEISH"])
async def test_bad_override_value_is_refused_naming_the_header(
    relay: Running, sink: Sink, value: str
) -> None:
    message = simple_message(headers=f"X-LM-Override-Track-Clicks: {value}\r\n")
    with pytest.raises(smtplib.SMTPDataError) as info:
        await send(relay.smtp_port, message)
    assert info.value.smtp_code == 550
    assert b"X-LM-Override-Track-Clicks" in info.value.smtp_error


async def test_message_data_is_stored_for_clicks(relay: Running, sink: Sink) -> None:
    headers = ("X-LM-Tag: welcome\r\nX-LM-Metadata-user-id: 42\r\n"
               "X-LM-Metadata-Plan: pro\r\n")
    await send(relay.smtp_port, simple_message(headers=headers, subject="=?utf-8?q?Hej_d=C3=A5?="))
    received = await sink.wait_for(1)
    ids = re.findall(rb"/c/([A-Za-z0-9_.-]+)", received[0].content)
    assert len(ids) == 1
    queued = await relay.store.db.fetchall("SELECT id FROM messages")
    message = await relay.store.get_message(queued[0][0])
    assert message is not None
    assert (message.project_id, message.route_id) == ("acme", "acme-outgoing")
    assert message.rcpt_to == "rcpt@example.org"
    assert message.subject == "Hej då"
    assert message.tag == "welcome"
    assert message.metadata == {"user-id": "42", "Plan": "pro"}
    links = await relay.store.get_links(message.id)
    assert [(lk.index, lk.destination, lk.anchor_text) for lk in links] == [
        (0, "https://example.com/a", "A")
    ]


# listmonk's and CiviCRM's opt-out links do not say "unsubscribe": the mail's
# List-Unsubscribe field says which links they are.
LIST_UNSUBSCRIBE = (
    "List-Unsubscribe: <https://lists.example.org/subscription/7f3a-9c?l=news&s=1>,\r\n"
    " <mailto:optout@lists.example.org?subject=opt%20out>\r\n"
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
)


async def test_a_list_unsubscribe_url_is_not_tracked(relay: Running, sink: Sink) -> None:
    html = ('<p><a href="https://lists.example.org/subscription/7f3a-9c?l=news&amp;s=1">Stop'
            ' these mails</a> <a href="https://example.com/a">A</a>'
            ' <a href="https://lists.example.org/subscription/7f3a-9c?l=other">Not it</a></p>')
    await send(relay.smtp_port, simple_message(html=html, headers=LIST_UNSUBSCRIBE))
    content = (await sink.wait_for(1))[0].content
    head, body = content.split(b"\r\n\r\n", 1)
    assert LIST_UNSUBSCRIBE.encode() in head + b"\r\n"  # both fields go out as they came
    assert b'href="https://lists.example.org/subscription/7f3a-9c?l=news&amp;s=1"' in body
    assert len(TRACKED.findall(body)) == 2  # the other links are tracked
    (row,) = await relay.store.db.fetchall("SELECT id FROM messages")
    links = await relay.store.get_links(row[0])
    assert [lk.destination for lk in links] == [
        "https://example.com/a", "https://lists.example.org/subscription/7f3a-9c?l=other"]
