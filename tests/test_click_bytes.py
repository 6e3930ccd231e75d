"""Clicks whose headers carry bytes that are not UTF-8 (docs/hostile-input.md). aiohttp's parser
keeps such a byte as a lone surrogate, which SQLite cannot store: one such click used to
fail its whole batch, three times, so that one request every two seconds kept every
click from being stored. Now the click is stored with U+FFFD in place of each such byte,
beside the clicks of its batch, whichever of the front or aiohttp's view answers it."""

from __future__ import annotations

import asyncio

import pytest

from relay.server import Running
from tests.redirecting import HOST, token
from tests.test_http_hostile import assert_redirect_still_correct

GOOD_CLICKS = 30
# Header lines as a client may send them, raw: a lone 0xff, Latin-1 text, a cut
# sequence, and a forwarded address with a stray byte (from a trusted proxy).
BAD_HEADERS = (
    b"User-Agent: \xff",
    b"Accept-Language: d\xe9, fr;q=0.8",
    b'Sec-CH-UA: "Brand\xc3\x28"',
    b"X-Forwarded-For: 203.0.113.\xff",
)

pytestmark = pytest.mark.usefixtures("both_stores")


def head(message_id: str, *lines: bytes, close: bool = False) -> bytes:
    """A click's request head. ``close``: ``Connection: close``, which the front hands to
    aiohttp's view."""
    start = f"GET /c/{token(message_id=message_id)} HTTP/1.1\r\nHost: {HOST}\r\n".encode()
    if close:
        lines = (*lines, b"Connection: close")
    return start + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


async def status_of(relay: Running, request: bytes) -> bytes:
    """The status line of the answer to ``request``, sent as it is."""
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.http_port)
    try:
        writer.write(request)
        await writer.drain()
        return await reader.readline()
    finally:
        writer.close()


@pytest.mark.usefixtures("both_click_paths")
async def test_a_click_with_bytes_that_are_not_utf8_is_stored_beside_the_others(
    relay: Running,
) -> None:
    bad = {"bad-front": head("bad-front", *BAD_HEADERS),
           "bad-view": head("bad-view", *BAD_HEADERS, close=True)}
    good = {f"good-{i}": head(f"good-{i}", close=i % 2 == 0) for i in range(GOOD_CLICKS)}
    requests = {**bad, **good}
    # Concurrent, so that the bad clicks share batches with the good ones.
    answers = await asyncio.gather(*(status_of(relay, r) for r in requests.values()))
    assert all(a.startswith(b"HTTP/1.1 302 ") for a in answers), answers
    for message_id in requests:
        assert len(await relay.store.get_observations(message_id)) == 1, message_id
    (plain,) = await relay.store.get_observations("good-0")
    for message_id in bad:
        (stored,) = await relay.store.get_observations(message_id)
        assert stored.user_agent == "\ufffd"
        assert stored.headers["accept-language"] == "d\ufffd, fr;q=0.8"
        assert stored.headers["sec-ch-ua"] == '"Brand\ufffd("'
        assert stored.addr_hash == plain.addr_hash  # the hop is no address: the peer's
    await assert_redirect_still_correct(relay)
