"""GET/HEAD /o/{token} over HTTP against the running relay (docs/opens.md): a valid open is
recorded (the same group commit as clicks) before the 43-byte transparent GIF goes out;
an expired or invalid token, or a token on another project's host, gets the image too and
nothing is recorded. Each test runs with the listener's front and with plain aiohttp."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from relay.server import Running
from tests.redirecting import HOST, open_token, token
from tracker.webhooks.events import OPEN_LINK_INDEX

pytestmark = pytest.mark.usefixtures("both_click_paths")
# The tests where the store is the point also run on PostgreSQL (the rest, refusals that
# store nothing, on SQLite alone: the suite's time).
both_stores = pytest.mark.usefixtures("both_stores")

BROWSER = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15"
                         " (KHTML, like Gecko)",
           "Accept": "image/webp,image/*;q=0.8", "Accept-Language": "en-GB",
           "Sec-Fetch-Dest": "image", "Sec-Fetch-Mode": "no-cors", "Cookie": "not=kept"}


async def fetch(relay: Running, path: str, *, method: str = "GET", host: str = HOST,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    url = f"http://127.0.0.1:{relay.http_port}{path}"
    async with aiohttp.ClientSession() as session, session.request(
        method, url, headers={"Host": host, **(headers or {})}, allow_redirects=False,
    ) as response:
        return response.status, dict(response.headers), await response.read()


def assert_pixel(status: int, headers: dict[str, str], body: bytes, head: bool = False) -> None:
    assert status == 200
    assert headers["Content-Type"] == "image/gif"
    assert headers["Cache-Control"] == "no-store, private"
    assert headers["Content-Length"] == "43"
    if head:
        assert body == b""
        return
    assert len(body) == 43 and body.startswith(b"GIF89a\x01\x00\x01\x00")  # 1×1
    # The graphic control extension marks colour 0 transparent (GIF89a, §23).
    extension = body.index(b"!\xf9\x04")
    assert body[extension + 3] & 1 and body[extension + 6] == 0


def opens_counted(relay: Running, outcome: str) -> float:
    value = relay.metrics.registry.get_sample_value("clickrelay_opens_total",
                                                    {"outcome": outcome})
    return value or 0.0


@both_stores
async def test_open_is_stored_then_answered_with_the_image(relay: Running) -> None:
    assert_pixel(*await fetch(relay, f"/o/{open_token(message_id='m-o')}", headers=BROWSER))
    [obs] = await relay.store.get_observations("m-o")  # committed before the answer
    assert (obs.link_index, obs.destination, obs.project_sid, obs.method) == (
        OPEN_LINK_INDEX, "", "acme1", "GET")
    assert obs.user_agent == BROWSER["User-Agent"]
    assert obs.headers == {"accept": "image/webp,image/*;q=0.8", "accept-language": "en-GB",
                           "sec-fetch-dest": "image", "sec-fetch-mode": "no-cors"}
    assert opens_counted(relay, "recorded") == 1
    assert relay.metrics.registry.get_sample_value(
        "clickrelay_clicks_total", {"outcome": "recorded"}) in (None, 0)


@both_stores
async def test_head_is_recorded_and_answered(relay: Running) -> None:
    assert_pixel(*await fetch(relay, f"/o/{open_token(message_id='m-h')}", method="HEAD"),
                 head=True)
    [obs] = await relay.store.get_observations("m-h")
    assert obs.method == "HEAD"


@pytest.mark.parametrize(("path", "host", "outcome"), [
    (f"/o/{open_token(message_id='m-x', expires=1_000_000)}", HOST, "expired"),
    (f"/o/{open_token(message_id='m-x')}", "pother1.t.localhost:8080", "refused"),
    (f"/o/{open_token(message_id='m-x', sid='other1')}", HOST, "refused"),
    (f"/o/{token(message_id='m-x')}", HOST, "refused"),  # a click's token is no open's
    (f"/o/{open_token(message_id='m-x')[:-2]}", HOST, "refused"),
    ("/o/not-a-token", HOST, "refused"),
    ("/o/", HOST, "refused"),
])
async def test_expired_and_invalid_tokens_get_the_image_and_no_record(
    relay: Running, path: str, host: str, outcome: str
) -> None:
    assert_pixel(*await fetch(relay, path, host=host))
    assert await relay.store.get_observations("m-x") == []
    assert opens_counted(relay, outcome) == 1


@both_stores
async def test_an_open_token_is_no_link(relay: Running) -> None:
    status, _, _ = await fetch(relay, f"/c/{open_token(message_id='m-c')}")
    assert status == 404
    assert await relay.store.get_observations("m-c") == []


@both_stores
async def test_opens_and_clicks_pipelined_on_one_connection(relay: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.http_port)
    requests = b"".join(
        f"GET /{kind}/{tok} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
        for kind, tok in (("o", open_token(message_id="m-p")),
                          ("c", token(message_id="m-p", index=1)),
                          ("o", open_token(message_id="m-p"))))
    writer.write(requests)
    data = b""
    while data.count(b"HTTP/1.1 ") < 3 or not data.endswith(b";"):
        chunk = await reader.read(65536)
        assert chunk
        data += chunk
    writer.close()
    assert re.findall(rb"HTTP/1\.1 (\d{3})", data) == [b"200", b"302", b"200"]
    observations = await relay.store.get_observations("m-p")
    assert sorted(o.link_index for o in observations) == [OPEN_LINK_INDEX, OPEN_LINK_INDEX, 1]
