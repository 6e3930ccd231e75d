"""Hostile HTTP clients against the tracker: huge tokens and headers, random paths and
methods, and slow clients that hold connections open trickling bytes. None gets a 5xx,
none gets a redirect we did not sign, and other clients keep being served meanwhile."""

from __future__ import annotations

import asyncio
import random
from urllib.parse import quote

from relay.server import Running
from tests.redirecting import HOST, click, token

SLOW_CLIENTS = 50


async def raw(relay: Running, request: bytes) -> int:
    """Send bytes as they are; the status code of the answer (0: closed without one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.http_port)
    try:
        writer.write(request)
        await writer.drain()
        line = await reader.readline()
        return int(line.split()[1]) if line.startswith(b"HTTP/") else 0
    finally:
        writer.close()


def get(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def assert_redirect_still_correct(relay: Running) -> None:
    answer = await click(relay, token("https://example.com/still?ok=1", message_id="ok"))
    assert answer.status == 302
    assert answer.headers["Location"] == "https://example.com/still?ok=1"
    assert [o.message_id for o in await relay.store.get_observations("ok")]


async def test_huge_tokens_and_headers_are_refused_without_a_server_error(
    relay: Running,
) -> None:
    good = token()
    cases = [
        get("/c/" + "A" * 200_000),
        get("/c/" + good + "A" * 5_000),
        get("/c/" + good * 3),
        get("/c/" + good, "X-Big: " + "x" * 100_000),
        get("/c/" + good, "User-Agent: " + "Mozilla/5.0 " * 600),
        get("/c/" + good, *[f"X-H{i}: {i}" for i in range(2_000)]),
        get("/c/" + good, "X-Forwarded-For: " + ", ".join(["203.0.113.9"] * 3_000)),
    ]
    statuses = [await raw(relay, case) for case in cases]
    assert all(0 < s < 500 for s in statuses), statuses
    assert statuses[1] == statuses[2] == 404  # never a redirect for a tampered token
    assert statuses[4] == 302  # a long agent within the header limit: a click, agent cut
    await assert_redirect_still_correct(relay)


async def test_random_paths_and_methods_never_redirect_or_fail(relay: Running) -> None:
    rng = random.Random(20261126)
    alphabet = [chr(c) for c in range(0x21, 0x7F)] + ["é", "\u202e", "%00", "..", "/"]
    statuses = []
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 120)))
        prefix = rng.choice(["/", "/c/", "/c/ey", "/v1/", "//", "/c/../"])
        path = prefix + quote(text, safe="/%.:?=&")
        method = rng.choice(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE"])
        request = get(path).replace(b"GET", method.encode(), 1)
        statuses.append(await raw(relay, request))
    assert all(0 < s < 500 for s in statuses), sorted(set(statuses))
    assert 302 not in statuses
    await assert_redirect_still_correct(relay)


async def test_slow_clients_do_not_hold_up_a_click(relay: Running) -> None:
    partial = get("/c/" + token()).split(b"\r\n\r\n")[0]
    slow = [await asyncio.open_connection("127.0.0.1", relay.http_port)
            for _ in range(SLOW_CLIENTS)]
    try:
        for step in range(3):  # trickle a few bytes of the request line and headers
            for _, writer in slow:
                writer.write(partial[step * 10:(step + 1) * 10])
                await writer.drain()
            await assert_redirect_still_correct(relay)
        # Each slow client still gets its answer once its request is complete.
        for _, writer in slow:
            writer.write(partial[30:] + b"\r\n\r\n")
            await writer.drain()
        lines = [await reader.readline() for reader, _ in slow]
        assert all(line.split()[1] == b"302" for line in lines)
    finally:
        for _, writer in slow:
            writer.close()
    # The three checks and every slow client's click, each stored before its 302.
    assert await relay.store.count_observations() == 3 + SLOW_CLIENTS
