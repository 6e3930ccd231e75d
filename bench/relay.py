"""Relay throughput: 100 KB HTML newsletters through clickrelay (rewrite, spool, forward)
against a bare aiosmtpd → aiosmtplib forwarder to the same sink, alternating in one run.

    .venv/bin/python bench/relay.py [--messages 200] [--rounds 3] [--clients 4]

Both systems run as child processes; this process is the SMTP client and the upstream
sink, and counts the time from the first submission until the sink holds every copy.
The result is the ratio of the two rates (same machine, same moment)."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib
import tomlkit
from aiosmtpd.smtp import SMTP, Envelope, Session

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "corpus"
TOKEN = "bench-project-token-0123456789"

BARE_FORWARDER = """
import asyncio, sys, aiosmtplib
from aiosmtpd.smtp import SMTP
class Forward:
    async def handle_DATA(self, server, session, envelope):
        await aiosmtplib.send(envelope.original_content, sender=envelope.mail_from,
                              recipients=envelope.rcpt_tos, hostname="127.0.0.1",
                              port=int(sys.argv[2]))
        return "250 OK"
async def main():
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: SMTP(Forward(), decode_data=False), "127.0.0.1",
                             int(sys.argv[1]))
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def newsletter() -> bytes:
    """A ~100 KB HTML newsletter made of real templates from the corpus."""
    parts = []
    for name in ("cerberus-hybrid.html", "cerberus-responsive.html", "konsav-general.html"):
        parts.append((CORPUS / "html" / name).read_text(encoding="utf-8"))
    html = "\n".join(parts)
    while len(html) < 100_000:
        item = len(html)
        html += f'\n<p><a href="https://shop.example.com/item?id={item}&amp;utm=news">Item</a></p>'

    body = html.encode("utf-8")
    head = (b"From: News <news@acme.test>\r\nTo: reader@example.org\r\nSubject: Newsletter\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n")
    lines = body.replace(b"\r\n", b"\n").split(b"\n")
    return head + b"\r\n".join(line[:900] for line in lines) + b"\r\n"


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.event = asyncio.Event()
        self.target = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += 1
        if self.count >= self.target:
            self.event.set()
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_clickrelay(tmp: Path, smtp_port: int, sink_port: int) -> subprocess.Popen[bytes]:
    settings = {
        "smtp": {"listen": f"127.0.0.1:{smtp_port}", "max_recipients": 50},
        "upstream": {"url": f"smtp://127.0.0.1:{sink_port}", "concurrency": 8},
        "http": {"listen": f"127.0.0.1:{free_port()}"},
        "tracking": {"base_url": "http://t.localhost:8080",
                     "signing_keys": [{"id": "k1",
                                       "secret": "bench-signing-key-0123456789abcdef"}]},
        "store": {"url": f"sqlite:///{tmp / 'clickrelay.db'}"},
        "api": {"team_token": "bench-team-token"},
        "projects": [{"id": "bench", "sid": "bench1", "token": TOKEN,
                      "routes": [{"id": "r", "slug": "r", "default": True, "track_clicks": True}]}],
    }
    path = tmp / "bench.toml"
    path.write_text(tomlkit.dumps(settings))
    return subprocess.Popen([sys.executable, "-m", "relay.cli", "--log-level", "error", "serve",
                             "--config", str(path)], cwd=ROOT)


def start_bare(smtp_port: int, sink_port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", BARE_FORWARDER, str(smtp_port),
                             str(sink_port)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


async def wait_listening(port: int) -> None:
    for _ in range(400):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


async def run_round(port: int, counter: Counter, message: bytes, total: int, clients: int,
                    login: bool) -> float:
    counter.count, counter.target = 0, total
    counter.event.clear()

    async def client(n: int) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        async with smtp:
            if login:
                await smtp.login("bench", TOKEN)
            for _ in range(n):
                await smtp.sendmail("news@acme.test", ["reader@example.org"], message)

    started = time.perf_counter()
    await asyncio.gather(*(client(total // clients) for _ in range(clients)))
    await asyncio.wait_for(counter.event.wait(), 600)
    return total / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    message = newsletter()
    counter = Counter()
    loop = asyncio.get_running_loop()
    sink = await loop.create_server(lambda: SMTP(counter, decode_data=False), "127.0.0.1", 0)
    sink_port = sink.sockets[0].getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        relay_port, bare_port = free_port(), free_port()
        procs = [start_clickrelay(Path(tmp), relay_port, sink_port),
                 start_bare(bare_port, sink_port)]
        try:
            await wait_listening(relay_port)
            await wait_listening(bare_port)
            total = args.messages - args.messages % args.clients
            await run_round(relay_port, counter, message, args.clients * 2, args.clients, True)
            rates: dict[str, list[float]] = {"clickrelay": [], "bare": []}
            for _ in range(args.rounds):
                rates["clickrelay"].append(
                    await run_round(relay_port, counter, message, total, args.clients, True))
                rates["bare"].append(
                    await run_round(bare_port, counter, message, total, args.clients, False))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()
    ours, bare = statistics.median(rates["clickrelay"]), statistics.median(rates["bare"])
    print(f"message size: {len(message)} bytes, {args.messages} messages x {args.rounds} rounds, "
          f"{args.clients} client connections, cpus={os.cpu_count()}")
    for name, rate in (("clickrelay", ours), ("bare forwarder", bare)):
        rounds = ", ".join(f"{r:.1f}" for r in rates[name.split()[0]])
        print(f"{name}: {rate:.1f} msg/s  (rounds: {rounds})")
    print(f"ratio clickrelay/bare: {ours / bare:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
