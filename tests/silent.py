"""A server that accepts connections and never says a word: an upstream MTA or a
webhook receiver that hangs. It keeps every connection open until it is stopped."""

from __future__ import annotations

import asyncio


class Silent:
    def __init__(self) -> None:
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(self._hold, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        await reader.read()  # until the client gives up and closes

    async def stop(self) -> None:
        if self.server is None:
            return
        self.server.close()
        for writer in self._writers:
            writer.close()
        await self.server.wait_closed()
        self.server = None
