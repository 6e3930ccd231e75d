"""A webhook receiver for the tests: a real aiohttp server on a loopback port that records
every request and answers as it is told (a status, or a hang until released)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from lettermint import Webhook


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.status = 200  # the answer to every request, until changed
        self._holds: dict[str, asyncio.Event] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{hook}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for hold in self._holds.values():
            hold.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, hook: str) -> str:
        return f"http://127.0.0.1:{self.port}/{hook}"

    def hold(self, hook: str) -> asyncio.Event:
        """Requests to ``hook`` wait (unanswered) until the returned event is set."""
        return self._holds.setdefault(hook, asyncio.Event())

    def to(self, hook: str) -> list[Received]:
        return [r for r in self.requests if r.path == f"/{hook}"]

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(Received(request.path, dict(request.headers), await request.read()))
        hold = self._holds.get(request.match_info["hook"])
        if hold is not None:
            await hold.wait()
        return web.Response(status=self.status, text="ok" if self.status < 300 else "boom")


def verified(received: Received, secret: str) -> dict[str, Any]:
    """The payload, checked with the official SDK exactly as a receiver would."""
    return dict(Webhook(secret).verify(received.body, received.headers))
