"""A click's latency while a large mail is being accepted, and the CPU that accepting it
costs: one message (25 MB and 50 recipients by default) submitted over SMTP to a running
``clickrelay serve`` while a second process clicks tracking links at a steady rate.

    .venv/bin/python bench/intake.py [--shape newsletter] [--size 25000000] [--recipients 50]
                                     [--rounds 3] [--rate 200]

Shapes: ``newsletter`` is a multipart/alternative text and quoted-printable HTML part
(about 200 KB, a link every 400 bytes) beside base64 images that make up the size;
``html`` is one quoted-printable HTML part of the whole size with a link every 4 KB;
``base64`` is that HTML part in base64.

Each round first clicks for two seconds with no mail (the idle latencies), then sends the
message (a raw SMTP conversation, the DATA prepared beforehand, so that the sender takes
little CPU from the two others) and keeps clicking until the relay has answered the DATA;
the clicks sent in that window are the loaded latencies. The relay's CPU time (all its
threads and descendant processes, from ``/proc``) is read just before the DATA, just after
its answer and once every copy has reached the upstream sink; the next round starts then."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import multiprocessing
import os
import quopri
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import tomlkit
from aiosmtpd.smtp import SMTP, Envelope, Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.redirect import (  # noqa: E402
    click_requests,
    free_port,
    thread_cpu,
    wait_listening,
)

SECRET = "bench-signing-key-0123456789abcdef"
TOKEN = "bench-project-token-0123456789"
IDLE_SECONDS = 2.0


# -- the messages ----------------------------------------------------------------------


def html_document(size: int, every: int) -> bytes:
    """An HTML document of about ``size`` bytes with a distinct link every ``every`` bytes
    (text between them, so that a 25 MB document stays within the default limits)."""
    filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 2 + "\n"
    pieces = ["<!doctype html><html><body>\n"]
    length = n = 0
    while length < size:
        piece = (f'<p><a href="https://shop.example.com/item?id={n}&amp;utm=news">Item {n}</a>'
                 f"</p>\n" + filler * max(0, (every - 80) // len(filler)))
        pieces.append(piece)
        length += len(piece)
        n += 1
    pieces.append("</body></html>\n")
    return "".join(pieces).encode()


def qp(data: bytes) -> bytes:
    return quopri.encodestring(data).replace(b"\n", b"\r\n")


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


HEAD = (b"From: News <news@acme.test>\r\nTo: reader@example.org\r\nSubject: Newsletter\r\n"
        b"MIME-Version: 1.0\r\n")


def message(shape: str, size: int) -> bytes:
    if shape == "html":
        return (HEAD + b"Content-Type: text/html; charset=utf-8\r\n"
                b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                + qp(html_document(size, 4000)))
    if shape == "base64":
        return (HEAD + b"Content-Type: text/html; charset=utf-8\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n"
                + b64(html_document(size * 3 // 4, 4000)))
    html = qp(html_document(min(200_000, size), 400))
    parts = [
        b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        + qp(b"Read it online: https://shop.example.com/news\n" * 200) + b"\r\n",
        b"--alt\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + html + b"\r\n--alt--\r\n",
    ]
    out = [HEAD, b'Content-Type: multipart/mixed; boundary="mix"\r\n\r\n',
           b'--mix\r\nContent-Type: multipart/alternative; boundary="alt"\r\n\r\n', *parts]
    image = b64(os.urandom(1_000_000))
    n = 0
    while sum(map(len, out)) < size:
        out.append(b"\r\n--mix\r\nContent-Type: image/jpeg\r\nContent-Transfer-Encoding: base64"
                   b"\r\nContent-Disposition: inline; filename=\"img%d.jpg\"\r\n\r\n" % n + image)
        n += 1
    out.append(b"\r\n--mix--\r\n")
    return b"".join(out)


# -- the clicks (in their own process) ------------------------------------------------


async def _clicker(port: int, requests: list[bytes], connections: int, rate: float,
                   stop: asyncio.Event, records: list[tuple[int, int]]) -> None:
    """One request in flight per connection; request n is due at start + n / rate."""
    interval = int(1e9 / rate)
    start = time.perf_counter_ns()
    sent = 0

    async def connection() -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while not stop.is_set():
            sent += 1
            due = start + sent * interval
            delay = (due - time.perf_counter_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(requests[sent % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 302"):
                raise RuntimeError(f"click answered {head[:40]!r}")
            records.append((due, time.perf_counter_ns() - max(due, 0)))
        writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))


def clicker(pipe: Connection, port: int, requests: list[bytes], connections: int,
            rate: float) -> None:
    """Click until the parent says stop; send back (due time, latency) in ns per click."""

    async def run() -> list[tuple[int, int]]:
        stop = asyncio.Event()
        records: list[tuple[int, int]] = []
        loop = asyncio.get_running_loop()
        loop.add_reader(pipe.fileno(), stop.set)
        pipe.send(time.perf_counter_ns())
        await _clicker(port, requests, connections, rate, stop, records)
        return records

    pipe.send(asyncio.run(run()))


# -- the relay and the sink ------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.count = 0
        self.changed = asyncio.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += len(envelope.rcpt_tos)
        self.changed.set()
        return "250 OK"

    async def wait_for(self, count: int) -> None:
        while self.count < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 600)


async def start_clickrelay(tmp: Path, smtp_port: int, http_port: int, sink_port: int,
                           size: int, parse_workers: int) -> asyncio.subprocess.Process:
    settings = {
        "smtp": {"listen": f"127.0.0.1:{smtp_port}", "max_recipients": 50,
                 "max_message_size": size + 1_000_000, "parse_workers": parse_workers},
        "upstream": {"url": f"smtp://127.0.0.1:{sink_port}", "concurrency": 8},
        "http": {"listen": f"127.0.0.1:{http_port}"},
        "tracking": {"base_url": "http://t.localhost:8080", "settle_seconds": 3600,
                     "signing_keys": [{"id": "k1", "secret": SECRET}]},
        "store": {"url": f"sqlite:///{tmp / 'clickrelay.db'}"},
        "api": {"team_token": "bench-team-token-0123456789"},
        "projects": [{"id": "bench", "sid": "bench1", "token": TOKEN,
                      "routes": [{"id": "r", "slug": "r", "default": True,
                                  "track_clicks": True}]}],
    }
    path = tmp / "bench.toml"
    path.write_text(tomlkit.dumps(settings))
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay.cli", "--log-level", "error", "serve", "--config",
        str(path), cwd=ROOT)


def process_cpu(pid: int) -> float:
    """CPU seconds of a process and all its descendants (clickrelay's observation writer,
    and its mail workers, children of a fork server that is its child)."""
    total = sum(thread_cpu(pid).values())
    for tid in os.listdir(f"/proc/{pid}/task"):  # a child belongs to the thread that made it
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
            for child in f.read().split():
                total += process_cpu(int(child))
    return total


def quantile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else float("nan")


async def expect(reader: asyncio.StreamReader, code: bytes) -> None:
    """Read replies up to the one that starts with ``code``; any other final 4xx/5xx
    reply stops the bench."""
    while True:
        line = await asyncio.wait_for(reader.readline(), 600)
        if line.startswith(code):
            return
        if line[:1] in (b"4", b"5") or not line:
            raise RuntimeError(f"the relay answered {line!r}")


def dot_stuffed(raw: bytes) -> bytes:
    """The DATA to send for ``raw`` (RFC 5321 §4.5.2), made once, so that the bench's own
    CPU during the measurement is the socket's copy and no more."""
    lines = raw.split(b"\r\n")
    if lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n"
                    for line in lines) + b".\r\n"


async def one_round(args: argparse.Namespace, pid: int, smtp_port: int, http_port: int,
                    sink: Sink, stuffed: bytes, requests: list[bytes]) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    proc = context.Process(target=clicker,
                           args=(child, http_port, requests, args.connections, args.rate))
    proc.start()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, parent.recv)
    await asyncio.sleep(IDLE_SECONDS)
    rcpts = [f"reader{i}@example.org" for i in range(args.recipients)]
    before = sink.count
    reader, writer = await asyncio.open_connection("127.0.0.1", smtp_port)
    await reader.readline()
    auth = base64.b64encode(b"\0bench\0" + TOKEN.encode())
    envelope = b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts)
    writer.write(b"EHLO bench\r\nAUTH PLAIN " + auth + b"\r\n")
    await expect(reader, b"235")
    cpu_before = process_cpu(pid)
    data_start = time.perf_counter_ns()
    writer.write(b"MAIL FROM:<news@acme.test>\r\n" + envelope + b"DATA\r\n")
    await expect(reader, b"354")
    writer.write(stuffed)
    await expect(reader, b"250 2.0.0")
    data_end = time.perf_counter_ns()
    cpu = process_cpu(pid) - cpu_before
    writer.write(b"QUIT\r\n")
    writer.close()
    await sink.wait_for(before + len(rcpts))
    delivered_end = time.perf_counter_ns()
    delivered_cpu = process_cpu(pid) - cpu_before
    parent.send(None)
    records: list[tuple[int, int]] = await loop.run_in_executor(None, parent.recv)
    proc.join()
    idle = [lat / 1e6 for due, lat in records if due < data_start]
    loaded = [lat / 1e6 for due, lat in records if data_start <= due <= data_end]
    delivering = [lat / 1e6 for due, lat in records if data_end < due <= delivered_end]
    return {"accept_s": (data_end - data_start) / 1e9, "cpu_s": cpu,
            "delivered_cpu_s": delivered_cpu, "deliver_s": (delivered_end - data_end) / 1e9,
            "idle_p50": quantile(idle, 50), "idle_p99": quantile(idle, 99),
            "p50": quantile(loaded, 50), "p99": quantile(loaded, 99),
            "max": max(loaded, default=float("nan")), "clicks": len(loaded),
            "deliver_p99": quantile(delivering, 99)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=("newsletter", "html", "base64"),
                        default="newsletter")
    parser.add_argument("--size", type=int, default=25_000_000, help="bytes of the message")
    parser.add_argument("--recipients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0, help="clicks per second")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--parse-workers", type=int, default=2,
                        help="[smtp] parse_workers (0: the mail is read in a thread)")
    args = parser.parse_args()
    raw = message(args.shape, args.size)
    requests = click_requests(500)
    sink = Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(sink, decode_data=False,
                                                   data_size_limit=None), "127.0.0.1", 0)
    sink_port = server.sockets[0].getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        smtp_port, http_port = free_port(), free_port()
        relay = await start_clickrelay(Path(tmp), smtp_port, http_port, sink_port, len(raw),
                                       args.parse_workers)
        try:
            await loop.run_in_executor(None, wait_listening, smtp_port)
            await loop.run_in_executor(None, wait_listening, http_port)
            stuffed = dot_stuffed(raw)
            rounds = [await one_round(args, relay.pid, smtp_port, http_port, sink, stuffed,
                                      requests) for _ in range(args.rounds)]
        finally:
            relay.terminate()
            await relay.wait()
    print(f"shape {args.shape}: {len(raw)} bytes to {args.recipients} recipients, "
          f"{args.rounds} rounds; clicks at {args.rate:.0f}/s on {args.connections} "
          f"connections; parse_workers={args.parse_workers}; cpus={os.cpu_count()}")
    for n, r in enumerate(rounds, 1):
        print(f"round {n}: accepted in {r['accept_s']:.2f} s, relay CPU {r['cpu_s']:.2f} s "
              f"({r['delivered_cpu_s']:.2f} s until delivered); "
              f"clicks idle p50 {r['idle_p50']:.2f} p99 {r['idle_p99']:.2f} ms; during the "
              f"DATA ({r['clicks']:.0f}) p50 {r['p50']:.2f} p99 {r['p99']:.2f} "
              f"max {r['max']:.2f} ms; delivered in {r['deliver_s']:.2f} s more, click p99 "
              f"meanwhile {r['deliver_p99']:.2f} ms")
    print("median: accepted in {:.2f} s, relay CPU {:.2f} s ({:.2f} s until delivered), "
          "click p99 during the DATA {:.2f} ms".format(
              *(statistics.median(r[k] for r in rounds)
                for k in ("accept_s", "cpu_s", "delivered_cpu_s", "p99"))))


if __name__ == "__main__":
    asyncio.run(main())
