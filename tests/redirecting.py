"""Helpers for the redirect tests: minting links, clicking them over HTTP against the
running relay on 127.0.0.1 with an explicit Host header, finding links in delivered mail."""

from __future__ import annotations

import email
import re
import time
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy

from relay.server import Running
from tests.conftest import SIGNING_SECRET
from tracker.config import SigningKey
from tracker.tokens import ClickClaims, OpenClaims, mint_open_token, mint_token

K1 = SigningKey("k1", SIGNING_SECRET)
HOST = "pacme1.t.localhost:8080"
FUTURE = int(time.time()) + 30 * 86_400
LINK = re.compile(r"""https?://[^\s"'<>]+/c/[A-Za-z0-9_.\-]+""")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: str


def token(destination: str = "https://example.com/a", *, message_id: str = "msg-1",
          index: int = 0, sid: str = "acme1", key: SigningKey = K1,
          expires: int = FUTURE) -> str:
    return mint_token(key, ClickClaims(message_id, index, destination, sid, expires))


def open_token(*, message_id: str = "msg-1", sid: str = "acme1", key: SigningKey = K1,
               expires: int = FUTURE) -> str:
    return mint_open_token(key, OpenClaims(message_id, sid, expires))


async def click(relay: Running, path_or_link: str, *, host: str | None = None,
                method: str = "GET", headers: dict[str, str] | None = None) -> Answer:
    """Request a tracking link from the relay's HTTP port with the link's own Host."""
    if "://" in path_or_link:
        parts = urlsplit(path_or_link)
        path, host = parts.path, host or parts.netloc
    else:
        path = path_or_link if path_or_link.startswith("/") else f"/c/{path_or_link}"
    url = f"http://127.0.0.1:{relay.http_port}{path}"
    async with aiohttp.ClientSession() as session, session.request(
        method, url, headers={"Host": host or HOST, **(headers or {})}, allow_redirects=False
    ) as response:
        return Answer(response.status, response.headers,
                      await response.text(errors="replace"))  # an open pixel: a GIF


def html_of(content: bytes) -> str:
    message = email.message_from_bytes(content, policy=policy.default)
    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def links_in(content: bytes) -> list[str]:
    return LINK.findall(html_of(content))
