"""The benchmarks' HTTP load generator (bench/redirect.py, bench/opens.py): an asyncio
HTTP/1.1 client written for the purpose, run in a process of its own. It keeps a number of
keep-alive connections with one request in flight on each, sends a bounded number of
requests per round, at full speed or paced at a rate, and reports the round's throughput,
latency percentiles and status codes."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection


@dataclass(frozen=True)
class Round:
    rps: float
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int]
    cpu_us: dict[str, float] | None = None  # CPU µs per request: server threads, generator



class _Client(asyncio.Protocol):
    """One keep-alive connection with one request in flight at a time."""

    def __init__(self, work: _Work) -> None:
        self.work = work
        self.buffer = b""
        self.started = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.send()

    def send(self) -> None:
        job = self.work.next_request()
        assert self.transport is not None
        if job is None:
            self.transport.close()
            return
        request, self.started = job
        delay = (self.started - time.perf_counter_ns()) / 1e9
        if delay > 0:  # paced: wait for the request's turn; its latency counts from then
            asyncio.get_running_loop().call_later(delay, self.transport.write, request)
        else:
            self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        length = _content_length(head)
        if len(self.buffer) < end + 4 + length:
            return
        self.work.done(int(head[9:12]), time.perf_counter_ns() - self.started)
        self.buffer = self.buffer[end + 4 + length :]
        self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        self.work.closed()


def _content_length(head: bytes) -> int:
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    end = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : end if end > 0 else len(head)])


class _Work:
    """The requests of one round. With a ``rate``, request n is due at start + n/rate
    (an open loop: a slow answer does not delay the schedule, so it cannot hide)."""

    def __init__(self, requests: list[bytes], total: int, connections: int, rate: float) -> None:
        self.requests, self.left, self.open = requests, total, connections
        self.interval_ns = int(1e9 / rate) if rate else 0
        self.start_ns = time.perf_counter_ns()
        self.sent = 0
        self.latencies: list[int] = []
        self.statuses: dict[int, int] = {}
        self.finished = asyncio.get_running_loop().create_future()

    def next_request(self) -> tuple[bytes, int] | None:
        if self.left == 0:
            return None
        self.left -= 1
        self.sent += 1
        due = (self.start_ns + self.sent * self.interval_ns if self.interval_ns
               else time.perf_counter_ns())
        return self.requests[self.sent % len(self.requests)], due

    def done(self, status: int, latency_ns: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies.append(latency_ns)

    def closed(self) -> None:
        self.open -= 1
        if self.open == 0 and not self.finished.done():
            self.finished.set_result(None)


async def _load(
    port: int | Sequence[int], requests: list[bytes], total: int, connections: int, rate: float
) -> Round:
    """One round; with several ports (nodes behind no balancer, bench/nodes.py) the
    connections are dealt over them in turn and share the round's requests."""
    loop = asyncio.get_running_loop()
    work = _Work(requests, total, connections, rate)
    ports = [port] if isinstance(port, int) else list(port)
    started = time.perf_counter()
    for i in range(connections):
        await loop.create_connection(lambda: _Client(work), "127.0.0.1", ports[i % len(ports)])
    await asyncio.wait_for(work.finished, 600)
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(work.latencies, n=100)
    return Round(len(work.latencies) / elapsed, cuts[49] / 1e6, cuts[98] / 1e6, work.statuses)


def load_generator(pipe: Connection) -> None:
    """Serve load requests from the parent: (port or ports, requests, total, connections,
    rate)."""
    while True:
        job = pipe.recv()
        if job is None:
            return
        pipe.send(asyncio.run(_load(*job)))


