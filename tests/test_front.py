"""The HTTP listener's front (tracker/http/front.py) over real sockets: plain clicks are answered
by the front, in order even when pipelined; anything else (another path, HTTP/1.0, a
body, a head that does not parse, a query string) is handed to aiohttp mid-connection
and answered exactly as aiohttp answers it; a click whose client went away is still
stored; idle connections are closed. The tests of what a client sees also run with plain
aiohttp (``[http] click_front = false``), which must answer the same."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from relay.server import Running, running
from store.records import Observation
from store.store import Store
from tests.conftest import wait_until, write_config
from tests.redirecting import HOST, token
from tracker.http import front
from tracker.http.redirect import NOT_FOUND_PAGE


@dataclass(frozen=True)
class Reply:
    version: str
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def get(path: str, *, method: str = "GET", version: str = "1.1", host: str = HOST,
        extra: str = "") -> bytes:
    return (f"{method} {path} HTTP/{version}\r\nHost: {host}\r\n"
            f"User-Agent: Mozilla/5.0 (front test)\r\n{extra}\r\n").encode()


async def read_reply(reader: asyncio.StreamReader, head_only: bool = False) -> Reply:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.strip("\r\n").split("\r\n")
    version, status, _ = status_line.split(" ", 2)
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if head_only else int(headers.get("content-length", "0"))
    return Reply(version, int(status), headers, await reader.readexactly(length))


async def exchange(relay: Running, data: bytes | Sequence[bytes], replies: int,
                   head_only: Sequence[bool] = ()) -> tuple[list[Reply], bytes]:
    """Send ``data`` (pieces written one by one) on one connection, read ``replies``
    answers, then what else comes until the server closes or goes quiet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.http_port)
    try:
        for piece in [data] if isinstance(data, bytes) else data:
            writer.write(piece)
            await writer.drain()
        answers = [await asyncio.wait_for(
            read_reply(reader, i < len(head_only) and head_only[i]), 30)
            for i in range(replies)]
        try:
            rest = await asyncio.wait_for(reader.read(65536), 0.2)
        except TimeoutError:
            rest = b"(open)"
        return answers, rest
    finally:
        writer.close()


async def stored(relay: Running, message_id: str) -> list[Observation]:
    return await relay.store.get_observations(message_id)


@pytest.mark.usefixtures("both_click_paths")
async def test_pipelined_clicks_are_answered_in_order(relay: Running) -> None:
    expired = token("https://example.com/old", message_id="m-expired",
                    expires=int(time.time()) - 60)
    requests = [get(f"/c/{token(message_id='m-1')}"), get("/c/not-a-token"),
                get(f"/c/{expired}"), get(f"/c/{token(message_id='m-2')}", method="HEAD")]
    answers, rest = await exchange(relay, b"".join(requests), 4,
                                   head_only=[False, False, False, True])
    assert [a.status for a in answers] == [302, 404, 302, 302]
    assert [a.headers.get("location") for a in answers] == [
        "https://example.com/a", None, "https://example.com/old", "https://example.com/a"]
    assert answers[1].body == NOT_FOUND_PAGE.encode()
    assert rest == b"(open)"  # keep-alive
    assert [o.method for o in await stored(relay, "m-1")] == ["GET"]
    assert [o.method for o in await stored(relay, "m-2")] == ["HEAD"]
    assert await stored(relay, "m-expired") == []


@pytest.mark.usefixtures("both_click_paths")
async def test_many_pipelined_clicks_on_one_connection(relay: Running) -> None:
    # More than the front lets a connection owe: it stops reading, then goes on.
    count = 3 * front.MAX_OWED
    requests = [get(f"/c/{token(message_id=f'm-{i}')}") for i in range(count)]
    answers, _ = await exchange(relay, b"".join(requests), count)
    assert [a.status for a in answers] == [302] * count
    assert await relay.store.count_observations() == count


@pytest.mark.usefixtures("both_click_paths")
async def test_a_head_written_byte_by_byte_is_a_click(relay: Running) -> None:
    request = get(f"/c/{token(message_id='m-slow')}")
    answers, _ = await exchange(relay, [request[i:i + 1] for i in range(len(request))], 1)
    assert answers[0].status == 302
    assert len(await stored(relay, "m-slow")) == 1


async def test_the_front_answers_with_the_headers_aiohttp_gives(relay: Running) -> None:
    link = f"/c/{token(message_id='m-same')}"
    # HTTP/1.1 keep-alive is the front's; a query string sends it to aiohttp's view.
    ours, _ = await exchange(relay, get(link), 1)
    theirs, _ = await exchange(relay, get(f"{link}?utm=x"), 1)
    assert ours[0].status == theirs[0].status == 302
    assert ours[0].headers.keys() == theirs[0].headers.keys()
    for name in ("location", "cache-control", "x-robots-tag", "content-length", "server"):
        assert ours[0].headers[name] == theirs[0].headers[name]
    missing_ours, _ = await exchange(relay, get("/c/nope"), 1)
    missing_theirs, _ = await exchange(relay, get("/c/nope?x=1"), 1)
    assert missing_ours[0].status == missing_theirs[0].status == 404
    assert missing_ours[0].body == missing_theirs[0].body
    assert ({k: v for k, v in missing_ours[0].headers.items() if k != "date"}
            == {k: v for k, v in missing_theirs[0].headers.items() if k != "date"})
    assert len(await stored(relay, "m-same")) == 2


@pytest.mark.usefixtures("both_click_paths")
async def test_another_request_hands_the_connection_to_aiohttp(relay: Running) -> None:
    requests = get(f"/c/{token(message_id='m-a')}") + get("/healthz") + get(
        f"/c/{token(message_id='m-b')}")
    answers, rest = await exchange(relay, requests, 3)
    assert [a.status for a in answers] == [302, 200, 302]
    assert json.loads(answers[1].body)["status"] == "ok"
    assert rest == b"(open)"
    assert len(await stored(relay, "m-a")) == len(await stored(relay, "m-b")) == 1


@pytest.mark.usefixtures("both_click_paths")
async def test_the_api_is_aiohttp_s_from_the_first_request(relay: Running) -> None:
    answers, _ = await exchange(relay, get("/v1/ping", extra="Authorization: Bearer x\r\n"),
                                1)
    assert answers[0].status == 401
    assert "application/json" in answers[0].headers["content-type"]


SMUGGLED = b"GET /c/x HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.mark.parametrize(
    "request_bytes, expected",
    [
        # HTTP/1.0: aiohttp answers in 1.0 and closes.
        (get("/c/{token}", version="1.0"), ("HTTP/1.0", 302)),
        # Connection: close is honoured by aiohttp.
        (get("/c/{token}", extra="Connection: close\r\n"), ("HTTP/1.1", 302)),
        # A body on a GET is read as a body, never as a request of its own.
        (get("/c/{token}", extra=f"Content-Length: {len(SMUGGLED)}\r\n") + SMUGGLED,
         ("HTTP/1.1", 302)),
        (get("/c/{token}", extra="Transfer-Encoding: chunked\r\n")
         + b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED), ("HTTP/1.1", 302)),
    ],
    ids=["http-1.0", "connection-close", "content-length-body", "chunked-body"],
)
@pytest.mark.usefixtures("both_click_paths")
async def test_what_is_not_a_plain_click_is_answered_by_aiohttp(
    relay: Running, request_bytes: bytes, expected: tuple[str, int]
) -> None:
    link = token(message_id="m-odd")
    answers, rest = await exchange(relay, request_bytes.replace(b"{token}", link.encode()), 1)
    assert (answers[0].version, answers[0].status) == expected
    assert answers[0].headers["location"] == "https://example.com/a"
    if b"close" in request_bytes or b"HTTP/1.0" in request_bytes:
        assert rest == b""  # closed after the answer
    else:
        assert rest == b"(open)"  # exactly one answer: the body was no request
    assert len(await stored(relay, "m-odd")) == 1


@pytest.mark.parametrize("head", [
    b"GET /c/abc HTTP/1.1\nHost: a\n\n",  # bare line feeds
    b"GET /c/abc HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n",
    b"GET /c/abc HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 20_000 + b"\r\n\r\n",
    b"GET /c/abc HTTP/9.9\r\nHost: a\r\n\r\n",
])
@pytest.mark.usefixtures("both_click_paths")
async def test_a_malformed_click_gets_aiohttp_s_refusal(relay: Running, head: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.http_port)
    try:
        writer.write(head)
        answer = await asyncio.wait_for(read_reply(reader), 30)
    finally:
        writer.close()
    assert 400 <= answer.status < 500
    assert await relay.store.count_observations() == 0


@pytest.mark.usefixtures("both_click_paths")
async def test_a_click_whose_client_left_is_still_stored(
    relay: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, gate = asyncio.Event(), asyncio.Event()
    original = relay.observation_writer.record_observations

    async def slow(batch: Sequence[Observation]) -> None:
        entered.set()
        await gate.wait()
        await original(batch)

    # The fault: a slow disk.
    monkeypatch.setattr(relay.observation_writer, "record_observations", slow)
    _, writer = await asyncio.open_connection("127.0.0.1", relay.http_port)
    writer.write(get(f"/c/{token(message_id='m-gone')}"))
    await writer.drain()
    await asyncio.wait_for(entered.wait(), 30)
    writer.close()
    await writer.wait_closed()
    gate.set()
    await wait_until(lambda: relay.metrics.registry.get_sample_value(
        "clickrelay_observation_batch_size_count") == 1)
    assert len(await stored(relay, "m-gone")) == 1


async def test_an_idle_connection_is_closed(relay: Running,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(front, "KEEPALIVE_TIMEOUT", 0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.http_port)
    writer.write(get(f"/c/{token(message_id='m-idle')}"))
    assert (await asyncio.wait_for(read_reply(reader), 30)).status == 302
    assert await asyncio.wait_for(reader.read(), 30) == b""  # closed by the server
    writer.close()


@pytest.mark.usefixtures("both_click_paths")
async def test_a_stop_sends_the_answers_owed_before_it_closes(
    settings: dict[str, Any], config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, gate = asyncio.Event(), asyncio.Event()
    async with AsyncExitStack() as stack:
        relay = await stack.enter_async_context(running(write_config(config_path, settings)))
        original = relay.observation_writer.record_observations

        async def slow(batch: Sequence[Observation]) -> None:
            entered.set()
            await gate.wait()
            await original(batch)

        monkeypatch.setattr(relay.observation_writer, "record_observations", slow)  # a slow disk
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.http_port)
        writer.write(get(f"/c/{token(message_id='m-stop')}"))
        await asyncio.wait_for(entered.wait(), 30)
        stopping = asyncio.create_task(stack.aclose())  # the click's commit is still held
        await asyncio.sleep(0.1)
        assert not stopping.done()
        gate.set()
        answer = await asyncio.wait_for(read_reply(reader), 30)
        assert answer.status == 302
        assert await asyncio.wait_for(reader.read(), 30) == b""  # then it closed
        await stopping
        writer.close()
    store = await Store.open(relay.config().store.where)
    try:
        assert len(await store.get_observations("m-stop")) == 1
    finally:
        await store.close()
