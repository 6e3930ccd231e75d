"""Arbitrary bytes at the HTTP listener (docs/hostile-input.md), with the front and with
plain aiohttp:
random bytes and pieces of requests, pipelined, ended by a close or a reset. After each,
an ordinary click is stored before its 302, /healthz answers 200, and nothing the
recorder or a background task logs is a traceback."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.server import Running
from tests.redirecting import HOST, click, token
from tests.test_front_attacks import connect, reset

pytestmark = pytest.mark.usefixtures("both_click_paths")

CLICK = token(message_id="m-fuzz").encode()
PIECES = [
    b"GET /c/", b"HEAD /c/", b"POST /c/", b"GET /healthz", b"GET /v1/ping", CLICK, b"?x=1",
    b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", f"Host: {HOST}\r\n".encode(), b"Host: x\r\n",
    b"Connection: close\r\n", b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n",
    b"Expect: 100-continue\r\n", b"Upgrade: websocket\r\nConnection: Upgrade\r\n",
    b"User-Agent: \xff\xfe\r\n", b"X-Forwarded-For: 198.51.100.7\r\n", b"5\r\nhello\r\n0\r\n",
    b"\r\n", b"\r\n\r\n", b"\n", b"\x00", b"%00", b" ",
]
# Where a traceback would mean that a client reached the tasks every click depends on.
WATCHED = ("clickrelay.observations", "clickrelay.supervisor", "asyncio")


def pieces() -> st.SearchStrategy[list[bytes]]:
    piece = st.one_of(st.sampled_from(PIECES), st.binary(min_size=1, max_size=64))
    return st.lists(st.lists(piece, min_size=1, max_size=12).map(b"".join),
                    min_size=1, max_size=4)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(writes=pieces(), how=st.sampled_from(["close", "reset", "half-close"]))
async def test_arbitrary_bytes_do_not_stop_click_recording(
    relay: Running, caplog: pytest.LogCaptureFixture, writes: list[bytes], how: str
) -> None:
    loop = asyncio.get_running_loop()
    sock = await connect(relay)
    try:
        for data in writes:
            await loop.sock_sendall(sock, data)
            await asyncio.sleep(0)  # the server reads each write on its own, mostly
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server refused and closed: the attack is over
    if how == "reset":
        reset(sock)
    else:
        if how == "half-close":
            sock.shutdown(socket.SHUT_WR)
        sock.close()

    message_id = f"m-after-{uuid.uuid4().hex}"
    answer = await click(relay, token("https://example.com/after", message_id=message_id))
    assert (answer.status, answer.headers["Location"]) == (302, "https://example.com/after")
    assert len(await relay.store.get_observations(message_id)) == 1
    assert (await click(relay, "/healthz")).status == 200
    assert [r for r in caplog.records if r.name.startswith(WATCHED)
            and (r.exc_info is not None or r.levelno >= logging.ERROR)] == []
    assert relay.metrics.registry.get_sample_value(
        "clickrelay_observation_waiter_failures_total") == 0
