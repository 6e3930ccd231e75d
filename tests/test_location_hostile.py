"""Destinations whose host has bytes no host may have (docs/hostile-input.md), over SMTP and HTTP
against the running relay: such a link is left untracked when the mail is relayed, a
control byte in a path or query is percent-encoded, and a token that carries such a host
(minted by hand, or by an older version) gets the 404 page, never raw bytes in a header."""

from __future__ import annotations

import asyncio
import re

import pytest

from relay.server import Running
from tests.conftest import send, simple_message
from tests.redirecting import HOST, click, html_of, links_in, token
from tests.sink import Sink

pytestmark = pytest.mark.usefixtures("both_click_paths")

HOSTILE_HOSTS = [
    "https://a\x01b.bücher.example/x",  # raw control byte: IDNA keeps ASCII labels as they are
    "https://a b.bücher.example/x",
    'https://a"b.bücher.example/x',
    "https://a<b.bücher.example/x",
    "https://ex\x7fample.com/x",
    "https://ex%0Dample.com/x",  # percent-encoded: browsers decode a host before using it
    "https://ａ＜b.example/x",  # full width: its IDNA form has '<'
]
# Anything in a head but printable ASCII, space and the line ends of each line.
_UNSAFE_IN_HEAD = re.compile(rb"[^\x20-\x7e]")


async def raw_get(relay: Running, path: str) -> bytes:
    """The whole answer to one GET, as bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.http_port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
                     .encode())
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


def head_lines(answer: bytes) -> list[bytes]:
    head, _, _ = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")


async def assert_still_recording(relay: Running, message_id: str) -> None:
    answer = await click(relay, token("https://example.com/after", message_id=message_id))
    assert (answer.status, answer.headers["Location"]) == (302, "https://example.com/after")
    assert len(await relay.store.get_observations(message_id)) == 1
    assert (await click(relay, "/healthz")).status == 200


def _href(url: str) -> str:
    return url.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


async def test_a_mail_s_link_to_a_hostile_host_is_left_untracked(
    relay: Running, sink: Sink
) -> None:
    hostile = "".join(f'<a href="{_href(url)}">bad</a> ' for url in HOSTILE_HOSTS)
    html = (f'<p>{hostile}<a href="https://example.com/a b\x01c?q=<x>">path</a> '
            '<a href="https://example.com/ok">ok</a></p>')
    await send(relay.smtp_port, simple_message(html))
    [received] = await sink.wait_for(1)
    delivered = html_of(received.content)
    for url in HOSTILE_HOSTS:
        assert f'href="{_href(url)}"' in delivered  # as the mail had it
    path_link, ok_link = links_in(received.content)
    path_answer = await raw_get(relay, path_link.split("8080", 1)[1])
    lines = head_lines(path_answer)
    assert lines[0] == b"HTTP/1.1 302 Found"
    assert b"Location: https://example.com/a%20b%01c?q=%3Cx%3E" in lines
    assert not any(_UNSAFE_IN_HEAD.search(line) for line in lines)
    assert (await click(relay, ok_link)).status == 302
    await assert_still_recording(relay, "m-after-mail")


@pytest.mark.parametrize("destination", HOSTILE_HOSTS)
async def test_a_token_for_a_hostile_host_gets_the_404_page(
    relay: Running, destination: str
) -> None:
    answer = await raw_get(relay, f"/c/{token(destination, message_id='m-hostile')}")
    lines = head_lines(answer)
    assert lines[0] == b"HTTP/1.1 404 Not Found"
    assert not any(_UNSAFE_IN_HEAD.search(line) for line in lines)
    assert not any(line.lower().startswith(b"location:") for line in lines)
    assert await relay.store.get_observations("m-hostile") == []
    await assert_still_recording(relay, "m-after-token")
