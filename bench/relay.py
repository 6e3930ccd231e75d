"""Relay throughput: 100 KB HTML newsletters through clickrelay (rewrite, spool, forward)
against a bare aiosmtpd → aiosmtplib forwarder to the same sink, alternating in one run.

    .venv/bin/python bench/relay.py [--messages 200] [--rounds 3] [--clients 4]
        [--shape 8bit|qp|base64] [--recipients 1]

``--shape``: the HTML as it is written (8bit, the HTML part alone), or as Python's email
package and Nodemailer send it by default: a multipart/alternative with a text part and the
HTML part in quoted-printable (qp) or base64. ``--recipients N``: each message goes to N
envelope recipients; clickrelay gets one transaction and makes a copy per recipient, the
bare forwarder sends the same message in N single-recipient transactions (one connection).
The rate is in recipient copies per second.

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
import urllib.request
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
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=int(sys.argv[2])) as smtp:
            for rcpt in envelope.rcpt_tos:
                await smtp.sendmail(envelope.mail_from, [rcpt], envelope.original_content)
        return "250 OK"
async def main():
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: SMTP(Forward(), decode_data=False), "127.0.0.1",
                             int(sys.argv[1]))
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def newsletter(shape: str = "8bit") -> bytes:
    """A ~100 KB HTML newsletter made of real templates from the corpus."""
    parts = []
    for name in ("cerberus-hybrid.html", "cerberus-responsive.html", "konsav-general.html"):
        parts.append((CORPUS / "html" / name).read_text(encoding="utf-8"))
    html = "\n".join(parts)
    while len(html) < 100_000:
        item = len(html)
        html += f'\n<p><a href="https://shop.example.com/item?id={item}&amp;utm=news">Item</a></p>'

    if shape != "8bit":
        return alternative(html, shape)
    body = html.encode("utf-8")
    head = (b"From: News <news@acme.test>\r\nTo: reader@example.org\r\nSubject: Newsletter\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n")
    lines = body.replace(b"\r\n", b"\n").split(b"\n")
    return head + b"\r\n".join(line[:900] for line in lines) + b"\r\n"


def alternative(html: str, encoding: str) -> bytes:
    """The newsletter as real senders' libraries build it: multipart/alternative, a text
    part, and the HTML in quoted-printable or base64 (Python's email package)."""
    from email.message import EmailMessage
    from email.policy import SMTP as SMTP_POLICY

    text = "Our newsletter. Read it in a browser: https://shop.example.com/news?id=1\n" * 40
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = "News <news@acme.test>"
    message["To"] = "reader@example.org"
    message["Subject"] = "Newsletter"
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html",
                            cte="quoted-printable" if encoding == "qp" else "base64")
    return message.as_bytes()


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


def start_clickrelay(tmp: Path, smtp_port: int, sink_port: int,
                     http_port: int) -> subprocess.Popen[bytes]:
    settings = {
        "smtp": {"listen": f"127.0.0.1:{smtp_port}", "max_recipients": 50},
        "upstream": {"url": f"smtp://127.0.0.1:{sink_port}", "concurrency": 8},
        "http": {"listen": f"127.0.0.1:{http_port}"},
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
                    login: bool, recipients: int = 1) -> float:
    """Recipient copies per second for ``total`` messages to ``recipients`` each."""
    counter.count, counter.target = 0, total * recipients
    counter.event.clear()
    rcpts = [f"reader{i}@example.org" for i in range(recipients)]

    async def client(n: int) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        async with smtp:
            if login:
                await smtp.login("bench", TOKEN)
            for _ in range(n):
                await smtp.sendmail("news@acme.test", rcpts, message)

    started = time.perf_counter()
    await asyncio.gather(*(client(total // clients) for _ in range(clients)))
    await asyncio.wait_for(counter.event.wait(), 600)
    return total * recipients / (time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--shape", choices=("8bit", "qp", "base64"), default="8bit")
    parser.add_argument("--recipients", type=int, default=1)
    args = parser.parse_args()
    message = newsletter(args.shape)
    counter = Counter()
    loop = asyncio.get_running_loop()
    sink = await loop.create_server(lambda: SMTP(counter, decode_data=False), "127.0.0.1", 0)
    sink_port = sink.sockets[0].getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        relay_port, bare_port, http_port = free_port(), free_port(), free_port()
        procs = [start_clickrelay(Path(tmp), relay_port, sink_port, http_port),
                 start_bare(bare_port, sink_port)]
        try:
            await wait_listening(relay_port)
            await wait_listening(bare_port)
            total = args.messages - args.messages % args.clients
            await run_round(relay_port, counter, message, args.clients * 2, args.clients, True)
            rates: dict[str, list[float]] = {"clickrelay": [], "bare": []}
            commits = accepted = 0.0
            for _ in range(args.rounds):
                before = await asyncio.to_thread(store_counts, http_port)
                rates["clickrelay"].append(await run_round(
                    relay_port, counter, message, total, args.clients, True, args.recipients))
                after = await asyncio.to_thread(store_counts, http_port)
                commits += after[0] - before[0]
                accepted += after[1] - before[1]
                rates["bare"].append(await run_round(
                    bare_port, counter, message, total, args.clients, False, args.recipients))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()
    ours, bare = statistics.median(rates["clickrelay"]), statistics.median(rates["bare"])
    print(f"message size: {len(message)} bytes ({args.shape}), {args.messages} messages to "
          f"{args.recipients} recipients x {args.rounds} rounds, {args.clients} client "
          f"connections, cpus={os.cpu_count()}")
    for name, rate in (("clickrelay", ours), ("bare forwarder", bare)):
        rounds = ", ".join(f"{r:.1f}" for r in rates[name.split()[0]])
        print(f"{name}: {rate:.1f} copies/s  (rounds: {rounds})")
    print(f"ratio clickrelay/bare: {ours / bare:.2f}")
    print(f"clickrelay store commits (each an fsync) per accepted copy, spool and delivery "
          f"records together: {commits / accepted:.2f} ({commits:.0f} for {accepted:.0f})")


def store_counts(http_port: int) -> tuple[float, float]:
    """clickrelay's committed store transactions and accepted copies so far (/metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as answer:
        samples = dict(line.split(" ", 1) for line in answer.read().decode().splitlines()
                       if line.startswith(("clickrelay_store_commits_total",
                                           "clickrelay_mail_accepted_total")))
    return (float(samples["clickrelay_store_commits_total"]),
            float(samples["clickrelay_mail_accepted_total"]))


if __name__ == "__main__":
    asyncio.run(main())
