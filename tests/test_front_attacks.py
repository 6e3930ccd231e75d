"""Attacks on the click listener over real sockets (docs/hostile-input.md): a connection reset while
answers are owed and a hand-over waits (R1), and request heads trickled byte by byte
(R6). After each, an ordinary click is stored before its 302 and /healthz answers."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from relay import server
from relay.server import Running, running
from store.records import Observation
from tests.conftest import wait_until, write_config
from tests.redirecting import HOST, click, token
from tracker.clicks.recorder import ObservationRecorder
from tracker.http import front
from tracker.http.redirect import REDIRECTOR_KEY


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: attack test\r\n\r\n".encode()


async def connect(relay: Running) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", relay.http_port))
    return sock


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def read_to_end(sock: socket.socket, guard: float = 30.0) -> bytes:
    """What the server sends until it closes the connection (``guard``: against a hang,
    not a timed assertion)."""
    loop, received = asyncio.get_running_loop(), b""
    async with asyncio.timeout(guard):
        while chunk := await loop.sock_recv(sock, 65536):
            received += chunk
    return received


async def assert_still_recording(relay: Running, message_id: str) -> None:
    """An ordinary click is stored before its 302 goes out, and /healthz says ok."""
    answer = await click(relay, token("https://example.com/after", message_id=message_id))
    assert answer.status == 302
    assert answer.headers["Location"] == "https://example.com/after"
    assert [o.message_id for o in await relay.store.get_observations(message_id)] == [
        message_id]
    assert (await click(relay, "/healthz")).status == 200


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info is not None]


async def test_a_reset_while_a_hand_over_waits_does_not_stop_the_recorder(
    settings: dict[str, Any], config_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Short enough that a recorder that died shows in seconds (the click is let go
    # unstored), long enough that a working one always commits first.
    settings["tracking"]["store_deadline_ms"] = 5000
    async with running(write_config(config_path, settings)) as relay:
        recorder = relay.app[REDIRECTOR_KEY].recorder
        assert isinstance(recorder, ObservationRecorder)
        entered, gate = asyncio.Event(), asyncio.Event()
        original = relay.observation_writer.record_observations

        async def slow(batch: Sequence[Observation]) -> None:
            entered.set()
            await gate.wait()
            await original(batch)

        # The fault: a slow disk, so that the two clicks commit in two batches.
        monkeypatch.setattr(relay.observation_writer, "record_observations", slow)
        loop = asyncio.get_running_loop()
        sock = await connect(relay)
        await loop.sock_sendall(sock, get(f"/c/{token(message_id='m-r1-a')}"))
        await asyncio.wait_for(entered.wait(), 30)  # the first click's batch is held
        # The second click is queued behind it; /healthz must go to aiohttp after both.
        await loop.sock_sendall(sock, get(f"/c/{token(message_id='m-r1-b')}") + get("/healthz"))
        await wait_until(lambda: recorder.queued == 1)
        reset(sock)
        gate.set()  # the first answer's write fails; the second click commits after

        await assert_still_recording(relay, "m-r1-after")
        assert len(await relay.store.get_observations("m-r1-a")) == 1
        assert len(await relay.store.get_observations("m-r1-b")) == 1
    assert relay.metrics.registry.get_sample_value(
        "clickrelay_observation_waiter_failures_total") == 0
    assert tracebacks(caplog) == []


@pytest.mark.parametrize("pipelined", [1, 3])
async def test_resets_with_answers_owed_on_many_connections(
    relay: Running, caplog: pytest.LogCaptureFixture, pipelined: int
) -> None:
    # The same attack without a held store: clicks, a request for aiohttp, a reset, on
    # many connections at once, whatever the order in which the loop meets them.
    loop = asyncio.get_running_loop()
    sockets = [await connect(relay) for _ in range(20)]
    for n, sock in enumerate(sockets):
        clicks = b"".join(get(f"/c/{token(message_id=f'm-many-{n}-{i}')}")
                          for i in range(pipelined))
        await loop.sock_sendall(sock, clicks + get("/healthz"))
    for sock in sockets:
        reset(sock)
    await assert_still_recording(relay, "m-many-after")
    assert tracebacks(caplog) == []


async def trickle(relay: Running, head: bytes) -> bytes:
    """Send ``head`` one byte at a time, never its end, until the server closes the
    connection; what the server sent."""
    loop = asyncio.get_running_loop()
    sock = await connect(relay)
    reading = asyncio.create_task(read_to_end(sock))
    try:
        for byte in head:
            if reading.done():
                break
            try:
                await loop.sock_sendall(sock, bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            await asyncio.wait([reading], timeout=0.05)  # a byte every 50 ms
        return await reading
    finally:
        reading.cancel()
        sock.close()


ENDLESS = get(f"/c/{token(message_id='m-slow')}").rstrip(b"\r\n") + b"\r\nX-Slow: " + b"a" * 600


async def test_a_trickled_click_head_gets_408_and_is_closed(
    settings: dict[str, Any], config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings["http"]["request_head_timeout_seconds"] = 0.3
    async with running(write_config(config_path, settings)) as relay:
        answer = await trickle(relay, ENDLESS)
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b"\r\nConnection: close\r\n" in answer
        assert await relay.store.get_observations("m-slow") == []
        await assert_still_recording(relay, "m-slow-after")
    assert tracebacks(caplog) == []


@pytest.mark.usefixtures("both_click_paths")
async def test_bytes_of_a_head_do_not_restart_the_keep_alive_clock(
    settings: dict[str, Any], config_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A head timeout longer than the keep-alive time: the keep-alive clock alone, which
    # runs from the connect, must close the connection (aiohttp's rule).
    settings["http"]["request_head_timeout_seconds"] = 3600
    monkeypatch.setattr(front, "KEEPALIVE_TIMEOUT", 0.3)
    monkeypatch.setattr(server, "KEEPALIVE_TIMEOUT", 0.3)
    async with running(write_config(config_path, settings)) as relay:
        answer = await trickle(relay, ENDLESS)
        # aiohttp closes without a word; the front says 408 first.
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        await assert_still_recording(relay, "m-keepalive-after")
