"""The hidden honeypot link (docs/classification.md): spliced in right after the body start
tag lexbor takes, invisible to people, not counted as a link of the message, and a hit on it makes
the clicks near it machine clicks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from selectolax.lexbor import LexborHTMLParser

from relay.rewrite.honeypot import honeypot_html, insert_honeypot
from relay.server import Running, running
from tests.clicking import (
    click_as_person,
    delivered,
    events_of,
    link_index,
    send_tracked,
    with_webhooks,
)
from tests.conftest import CORPUS, write_config
from tests.receiver import Receiver
from tests.redirecting import click, html_of
from tests.sink import Sink
from tracker.webhooks.events import HONEYPOT_LINK_INDEX

# The relay's tests run on both stores; the rewriter's alone need none.
both_stores = pytest.mark.usefixtures("both_stores")

HREF = "https://pacme1.t.localhost/c/eyJ.x&y"
BAIT = honeypot_html(HREF)
SCANNER = "Mozilla/5.0 (compatible; link-checker)"


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ("<!doctype html><html><head><title>t</title></head><body>\n<p>Hi</p></body></html>",
         "<body>"),
        ('<html><BODY class="a>b" style=\'x\'\n bgcolor=#fff><p>Hi</p></body></html>',
         "bgcolor=#fff>"),
        ("<html><!-- <body> in a comment --><body id=real><p>Hi</p></body></html>",
         "<body id=real>"),
        ('<html><head><script>document.write("<body>")</script></head><body id=real>',
         "<body id=real>"),
        ('<html><img alt="<body id=fake>"><body id=real><p>Hi</p>', "<body id=real>"),
        ('<html><body id=real><p>x</p><body class=stray></p>', "<body id=real>"),
        ("<p>A fragment, as applications often send.</p>", ""),
    ],
)
def test_the_link_goes_right_after_the_body_tag_lexbor_takes(document: str, where: str) -> None:
    out = insert_honeypot(document, HREF)
    assert out is not None
    at = document.index(where) + len(where) if where else 0
    assert out == document[:at] + BAIT + document[at:]
    body = LexborHTMLParser(out).body
    assert body is not None and body.css_first("div[aria-hidden]") is not None


def test_a_document_without_a_body_tag_gets_none() -> None:
    assert insert_honeypot("<html><head></head><p>no body tag</p></html>", HREF) is None


def test_the_link_is_hidden_from_people() -> None:
    div = LexborHTMLParser(BAIT).css_first("div")
    assert div is not None
    style = (div.attributes.get("style") or "").replace(" ", "")
    assert "display:none" in style and "mso-hide:all" in style
    assert div.attributes.get("aria-hidden") == "true"
    [anchor] = div.css("a")
    assert anchor.attributes.get("href") == HREF  # the entity decodes back to "&"
    assert anchor.attributes.get("tabindex") == "-1"
    assert anchor.attributes.get("aria-hidden") == "true"
    assert "display:none" in (anchor.attributes.get("style") or "")
    assert div.text(deep=True) == "" and anchor.css("img") == []


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*/*.html")))
def test_real_templates_get_it_as_the_first_thing_in_their_body(name: str) -> None:
    path = next(CORPUS.glob(f"*/{name}"))
    document = path.read_bytes().decode("utf-8", "replace")
    out = insert_honeypot(document, HREF)
    assert out is not None
    at = out.index(BAIT)
    assert out[:at] + out[at + len(BAIT):] == document  # no other byte moved
    body = LexborHTMLParser(out).body
    assert body is not None
    first = next(node for node in body.iter() if node.tag != "-comment"
                 and not (node.tag == "-text" and not (node.text() or "").strip()))
    assert first.tag == "div" and first.attributes.get("aria-hidden") == "true"


@pytest.fixture
async def baited(
    settings: dict[str, Any], config_path: Path, receiver: Receiver
) -> AsyncIterator[Running]:
    settings["projects"][0]["routes"][0]["bot_honeypot"] = True
    with_webhooks(settings, receiver.url, people=False)
    async with running(write_config(config_path, settings)) as relay:
        yield relay


PAGE = ('<html><body bgcolor="#fff"><p><a href="https://example.com/a">A</a>'
        '<a href="https://example.com/b">B</a></p></body></html>')


@both_stores
async def test_a_route_with_a_honeypot_sends_it_and_keeps_the_link_indexes(
    baited: Running, sink: Sink
) -> None:
    [sent] = await send_tracked(baited, sink, PAGE)
    html = html_of(sink.handler.received[-1].content)
    assert html.startswith('<html><body bgcolor="#fff"><div aria-hidden="true" style="display')
    assert sorted(link_index(lk) for lk in sent.links) == [0, 1, HONEYPOT_LINK_INDEX]
    links = await baited.store.get_links(sent.message_id)
    assert [(lk.index, lk.honeypot) for lk in links] == [
        (0, False), (1, False), (HONEYPOT_LINK_INDEX, True)]
    assert [lk.destination for lk in links[:2]] == ["https://example.com/a",
                                                     "https://example.com/b"]


@both_stores
async def test_a_route_without_one_sends_none(relay: Running, sink: Sink) -> None:
    [sent] = await send_tracked(relay, sink, PAGE)
    assert sorted(link_index(lk) for lk in sent.links) == [0, 1]
    assert all(not lk.honeypot for lk in await relay.store.get_links(sent.message_id))


@both_stores
async def test_a_hit_on_the_honeypot_makes_nearby_clicks_machine(
    baited: Running, sink: Sink, receiver: Receiver
) -> None:
    [sent] = await send_tracked(baited, sink, PAGE)
    answer = await click(baited, sent.link(HONEYPOT_LINK_INDEX),
                         headers={"User-Agent": SCANNER, "X-Forwarded-For": "192.0.2.9"})
    assert answer.status == 302
    await click_as_person(baited, sent.link(0))
    [event] = await events_of(baited, sent.message_id, 1)
    assert event.link_index == 0  # the honeypot hit itself is no click on a link
    assert event.machine and "near_honeypot" in event.rules
    assert await delivered(baited, event) == []  # no webhook takes machine clicks
    assert receiver.requests == []
    hits = await baited.store.get_observations(sent.message_id)
    assert [(o.link_index, o.state) for o in hits] == [(HONEYPOT_LINK_INDEX, "done"), (0, "done")]


@both_stores
async def test_without_a_honeypot_hit_the_same_click_is_a_person(
    baited: Running, sink: Sink, receiver: Receiver
) -> None:
    [sent] = await send_tracked(baited, sink, PAGE)
    await click_as_person(baited, sent.link(0))
    [event] = await events_of(baited, sent.message_id, 1)
    assert not event.machine and "near_honeypot" not in event.rules
    assert [d.webhook_id for d in await delivered(baited, event)] == ["people"]
