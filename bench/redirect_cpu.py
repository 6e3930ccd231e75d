"""CPU per click on the event loop, without the machine's noise: clickrelay's click path
(the listener's front, the redirector and the observation recorder) against aiohttp's
own protocol with a handler that answers 302 and does nothing, both in this process, fed
the same requests on in-memory transports, alternating A/B.

    .venv/bin/python bench/redirect_cpu.py [--requests 100000] [--rounds 3]

No sockets, no load generator and no disk: the recorder's store makes each batch into the
observation writer's request and counts it committed at once (no writer, no SQLite), so
this measures the Python work of a click on the event loop, not its commit
(bench/redirect.py measures the whole). 50 connections each carry one request at a time;
a round ends when every answer has been written."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from redirect import click_requests, write_config  # noqa: E402

from relay.config.load import load_config  # noqa: E402
from store.records import Observation  # noqa: E402
from store.writer.client import batch_request  # noqa: E402
from tracker.clicks.recorder import ObservationRecorder  # noqa: E402
from tracker.http.front import Front  # noqa: E402
from tracker.http.redirect import Redirector  # noqa: E402
from tracker.metrics import Metrics  # noqa: E402
from tracker.supervisor import Supervisor  # noqa: E402

CONNECTIONS = 50


class MemoryTransport(asyncio.Transport):
    """A connection whose writes are counted, not sent."""

    def __init__(self, on_answer: Callable[[], None]) -> None:
        super().__init__()
        self.on_answer = on_answer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.10", 40000) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.on_answer()

    def writelines(self, list_of_data: Any) -> None:
        self.on_answer()

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class InstantStore:
    """The observation writer's server end without the writer: each batch is made into
    the request the writer would be sent, and counts as committed at once."""

    async def record_observations(self, batch: Sequence[Observation]) -> None:
        batch_request(0, batch)


async def drive(factory: Callable[[], asyncio.Protocol], requests: list[bytes],
                total: int) -> float:
    """µs per request: each connection is sent its next request once its answer is out."""
    answered = 0
    done = asyncio.get_running_loop().create_future()
    protocols: list[asyncio.Protocol] = []
    sent = 0

    def answer_from(index: int) -> Callable[[], None]:
        def on_answer() -> None:
            nonlocal answered, sent
            answered += 1
            if answered == total:
                done.set_result(None)
            elif sent < total:
                request = requests[sent % len(requests)]
                sent += 1
                asyncio.get_running_loop().call_soon(protocols[index].data_received, request)
        return on_answer

    for index in range(CONNECTIONS):
        protocol = factory()
        protocol.connection_made(MemoryTransport(answer_from(index)))
        protocols.append(protocol)
    started = time.perf_counter()
    for protocol in protocols:
        protocol.data_received(requests[sent % len(requests)])
        sent += 1
    await done
    elapsed = time.perf_counter() - started
    for protocol in protocols:
        protocol.connection_lost(None)
    return elapsed / total * 1e6


async def bare_factory() -> tuple[Callable[[], asyncio.Protocol], web.AppRunner]:
    async def view(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "https://shop.example.com/item",
                                                 "Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/c/{token:.*}", view)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    assert runner.server is not None
    return runner.server, runner


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100_000, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    requests = click_requests(2000)
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(write_config(Path(tmp)))
        metrics = Metrics()
        recorder = ObservationRecorder(lambda: config, InstantStore(), metrics)
        recorder.start(Supervisor(metrics))
        front = Front(Redirector(lambda: config, recorder, metrics), lambda: asyncio.Protocol())
        bare, runner = await bare_factory()
        results: dict[str, list[float]] = {"clickrelay": [], "bare": []}
        await drive(front, requests, 5000)  # warm-up: caches, the user-agent tables
        await drive(bare, requests, 5000)
        for _ in range(args.rounds):
            results["clickrelay"].append(await drive(front, requests, args.requests))
            results["bare"].append(await drive(bare, requests, args.requests))
        await recorder.stop()
        await runner.cleanup()
    print(f"{args.rounds} rounds of {args.requests} requests, {CONNECTIONS} connections, "
          f"python {sys.version.split()[0]}")
    for name, rounds in results.items():
        print(f"{name:>10}: {statistics.median(rounds):5.1f} µs a request "
              f"(rounds: {', '.join(f'{r:.1f}' for r in rounds)})")
    ratio = statistics.median(results["bare"]) / statistics.median(results["clickrelay"])
    print(f"requests per CPU second, clickrelay/bare: {ratio:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
