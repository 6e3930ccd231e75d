"""The click front against plain aiohttp (``[http] click_front``): random request streams
(pipelined clicks, valid and refused tokens, other paths, bodies, ``Connection: close``,
HTTP/1.0, malformed heads), written in pieces cut at random bytes, get the same answers
from both, in the same order, with the same closes. Fails loudly when a new aiohttp
parses or answers differently from what the front assumes (tracker/http/front.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.server import Running, running
from tests.conftest import base_settings, wait_until, write_config
from tests.redirecting import HOST, open_token, token
from tests.sink import Sink

EXPIRED = int(time.time()) - 60
TARGETS = [
    f"/c/{token(message_id='m-diff')}",
    f"/c/{token('https://bücher.example/straße?q=ä', message_id='m-diff')}",
    f"/c/{token(message_id='m-diff', expires=EXPIRED)}",
    f"/c/{token(message_id='m-diff', sid='other1')}",  # another project's host
    f"/c/{token('https://a b.bücher.example/', message_id='m-diff')}",  # refused host
    f"/c/{token(message_id='m-diff')}?utm=1",
    f"/c/{token(message_id='m-diff')[:-3]}",
    f"/o/{open_token(message_id='m-diff')}",
    f"/o/{open_token(message_id='m-diff', expires=EXPIRED)}",
    f"/o/{open_token(message_id='m-diff', sid='other1')}",
    f"/o/{token(message_id='m-diff')}", "/o/not-a-token", "/o/", "/o/%41",
    f"/c/{open_token(message_id='m-diff')}",
    "/c/not-a-token", "/c/", "/c/a/b", "/c/%41", "/healthz", "/v1/ping", "/nowhere", "*",
    f"http://{HOST}/c/{token(message_id='m-diff')}",
]
HEADERS = [
    "Expect: 100-continue", "User-Agent: Mozilla/5.0 (differential)", "Accept: text/html",
    "X-Forwarded-For: 198.51.100.7", "Sec-Fetch-Mode: navigate", "Keep-Alive: timeout=5",
]
# What makes a request one that aiohttp's parser refuses (or answers 400 to).
ODDITIES = ["lower-case method", "HTTP/2.0", "HTTP/1.1 x", "bare LF", "no Host", "two Hosts",
            "Bad Header", " folded", "X-Nul: a\x00b", "X-Long: " + "y" * 9000, "X:\rY: z",
            "Content-Length: 1\r\nContent-Length: 2", "Transfer-Encoding: gzip"]
SENTINEL = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
_COMPARED = ("location", "content-type", "cache-control", "x-robots-tag", "connection",
             "allow", "transfer-encoding")


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, bool, bool]:
    """One request; whether it is odd (one aiohttp's parser may refuse), and whether it
    asks for the connection to be closed after its answer."""
    odd = draw(st.sampled_from(ODDITIES)) if draw(st.integers(0, 5)) == 0 else ""
    method = draw(st.sampled_from(["GET"] * 6 + ["HEAD"] * 2 + ["POST", "OPTIONS"]))
    version = draw(st.sampled_from(["HTTP/1.1"] * 9 + ["HTTP/1.0"]))
    host = draw(st.sampled_from([HOST] * 5 + ["pother1.t.localhost"]))
    connection = draw(st.sampled_from(["", "", "", "close", "keep-alive"]))
    headers = [f"Host: {host}",
               *draw(st.lists(st.sampled_from(HEADERS), max_size=3, unique=True))]
    if connection:
        headers.insert(draw(st.integers(1, len(headers))), f"Connection: {connection}")
    if odd == "lower-case method":
        method = method.lower()
    elif odd.startswith("HTTP/"):
        version = odd
    elif odd == "no Host":
        headers.pop(0)
    elif odd == "two Hosts":
        headers.insert(1, f"Host: {host}")
    elif odd != "bare LF" and odd:
        headers.insert(draw(st.integers(0, len(headers))), odd)
    body = b""
    framing = draw(st.sampled_from(["none"] * 4 + ["length", "chunked"]))
    if framing != "none":
        body = draw(st.binary(max_size=40))
    if framing == "length":
        headers.append(f"Content-Length: {len(body)}")
    elif framing == "chunked":
        headers.append("Transfer-Encoding: chunked")
        body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    end = "\n" if odd == "bare LF" else "\r\n"
    target = draw(st.sampled_from(TARGETS))
    odd = odd or (target == "*" and method != "OPTIONS")  # "*" is OPTIONS' alone
    head = end.join([f"{method} {target} {version}", *headers])
    closing = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
    return (head + end + end).encode() + body, bool(odd), closing


@dataclass(frozen=True)
class Stream:
    """Requests one after the other, the places where they are cut into pieces, and the
    places where the writer first waits for the answers to the requests before."""

    data: bytes
    cuts: list[int]
    waits: dict[int, int]  # offset: how many requests come before it


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    """Requests cut at random bytes. When its parser refuses part of a read (a malformed
    head, or any byte after a request that closes), aiohttp drops the answers to the
    requests it parsed in that same read and answers 400 alone, which depends on how the
    bytes arrived, and which the front, having answered those clicks, does not do. So a
    request the parser may refuse, and what follows a closing one, is written only once
    the requests before it are answered: every read the test cannot control is alike."""
    data, cuts, waits = b"", draw(st.lists(st.integers(1, 2000), max_size=6)), {}
    generated = draw(st.lists(requests(), min_size=1, max_size=6))
    for count, (request, odd, closing) in enumerate(generated):
        if odd and count:
            waits[len(data)] = count
        data += request
        if closing:
            break  # nothing after it: aiohttp would refuse the bytes after it, or not see them
    else:
        data += SENTINEL
    return Stream(data, sorted({c for c in [*cuts, *waits] if c < len(data)}), waits)


@pytest.fixture
async def both(tmp_path: Path, sink: Sink) -> AsyncIterator[tuple[Running, Running]]:
    """The same configuration served with the front and without it."""
    async with AsyncExitStack() as stack:
        relays = []
        for name, front in (("front", True), ("aiohttp", False)):
            settings = base_settings(tmp_path / name, sink.port)
            settings["http"]["click_front"] = front
            config = write_config(tmp_path / f"{name}.toml", settings)
            relays.append(await stack.enter_async_context(running(config)))
        yield relays[0], relays[1]


async def transcript(relay: Running, stream: Stream) -> list[object]:
    """Write the stream in its pieces on one connection, letting the server read each
    piece before the next; the answers, read until the server closed it."""
    data, cuts = stream.data, stream.cuts
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", relay.http_port))
        received = bytearray()
        reading = asyncio.create_task(_read_to_end(loop, sock, received))
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            if start in stream.waits:
                count = stream.waits[start]
                await wait_until(lambda n=count: reading.done() or final_answers(received) >= n)
            try:
                await loop.sock_sendall(sock, data[start:end])
            except (BrokenPipeError, ConnectionResetError):
                break
            for _ in range(3):  # the server, in this loop, reads the piece on its own
                await asyncio.sleep(0)
        await asyncio.wait_for(reading, 30)  # a guard against a hang, not a timing
        return answers(bytes(received))
    finally:
        sock.close()


async def _read_to_end(loop: asyncio.AbstractEventLoop, sock: socket.socket,
                       into: bytearray) -> None:
    try:
        while chunk := await loop.sock_recv(sock, 65536):
            into += chunk
    except ConnectionResetError:
        pass  # a close with unread bytes: a close all the same


def final_answers(data: bytes | bytearray) -> int:
    """How many answers (not ``100 Continue``) ``data`` holds, at least in part."""
    return sum(1 for a in answers(bytes(data))
               if isinstance(a, tuple) and a[0].startswith("HTTP/") and a[0][9] != "1")


def answers(data: bytes) -> list[object]:
    """The answers in ``data``: status line and the headers that matter, and the body (a
    JSON body by its keys and status: /healthz counts differ between two servers; a 400's
    not at all: it quotes what the read that failed held, which depends on how the bytes
    arrived, with or without the front)."""
    out: list[object] = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep or not head.startswith(b"HTTP/"):
            out.append(("unparsed", data))
            break
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0")) if int(status.split()[1]) >= 200 else 0
        if length and (not rest or rest.startswith(b"HTTP/")):  # a HEAD's: no body
            length = 0
        body, data = rest[:length], rest[length:]
        if headers.get("content-type", "").startswith("application/json"):
            # Its length too differs with the counts (a HEAD's answer has only the length).
            parsed = json.loads(body) if body else {}
            body = json.dumps([sorted(parsed), parsed.get("status")]).encode()
        elif status.split()[1] == "400":
            body = b""  # aiohttp's parser error quotes the bytes of the read that failed
        else:
            body = body + b"|" + headers.get("content-length", "").encode()
        out.append((status, {k: v for k, v in headers.items() if k in _COMPARED}, body))
    return out


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(stream=streams())
async def test_front_and_aiohttp_answer_every_stream_alike(
    both: tuple[Running, Running], stream: Stream
) -> None:
    front, plain = both
    assert await transcript(front, stream) == await transcript(plain, stream)
