"""Helpers for the API tests: the official Lettermint SDK pointed at a running clickrelay
(it is synchronous: it runs in a worker thread while the server runs in the test's loop),
and plain HTTP for what the SDK cannot send (malformed bodies, missing headers)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from lettermint import Lettermint

from relay.server import Running
from tests.conftest import PROJECT_TOKEN, TEAM_TOKEN

T = TypeVar("T")

TRACKED = re.compile(rb'href="http://pacme1\.t\.localhost:8080/c/[A-Za-z0-9_.-]+"')
TRACKING_LINK = re.compile(rb'http://pacme1\.t\.localhost:8080(/c/[A-Za-z0-9_.-]+)')


def base_url(relay: Running) -> str:
    return f"http://127.0.0.1:{relay.http_port}/v1"


def sdk(relay: Running, *, sending_token: str | None = PROJECT_TOKEN,
        team_token: str | None = TEAM_TOKEN) -> Lettermint:
    return Lettermint(sending_token=sending_token, team_token=team_token,
                      base_url=base_url(relay), timeout=30)


class Clients:
    """SDK clients made during a test, closed at its end (each holds a connection pool)."""

    def __init__(self, relay: Running) -> None:
        self.relay = relay
        self._made: list[Lettermint] = []

    def __call__(self, **tokens: str | None) -> Lettermint:
        client = sdk(self.relay, **tokens)
        self._made.append(client)
        return client

    def close(self) -> None:
        for client in self._made:
            client.close()


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking SDK call off the event loop that serves it."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def email(**fields: Any) -> dict[str, Any]:
    """A minimal send request with one tracked-looking link; ``fields`` override."""
    message: dict[str, Any] = {
        "from": "Acme <sender@acme.test>",
        "to": ["rcpt@example.org"],
        "subject": "Hello",
        "html": '<p><a href="https://example.com/a">A</a></p>',
        "text": "Plain https://example.com/a",
    }
    message.update(fields)
    return message


async def read_text(path: Path) -> str:
    return await asyncio.to_thread(path.read_text, encoding="utf-8")


async def write_text(path: Path, text: str) -> None:
    await asyncio.to_thread(path.write_text, text, encoding="utf-8")


async def http(relay: Running, method: str, path: str, *, data: bytes | str | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """A plain request to the API; the body decoded as JSON when it is JSON."""
    url = f"http://127.0.0.1:{relay.http_port}{path}"
    async with aiohttp.ClientSession() as session, session.request(
        method, url, data=data, headers=headers or {}
    ) as response:
        body: Any = await response.read()
        if response.content_type == "application/json":
            body = await response.json()
        return response.status, dict(response.headers), body
