"""Soak: a ``clickrelay serve`` process under steady mixed load for a long while, watched
for leaks. Mail goes in over SMTP, every delivered copy's link is clicked like a browser
would, every click's webhook is received; the process's resident memory and open file
descriptors (of the server and its observation writer together) are sampled from /proc
every ``--sample-seconds``.

    .venv/bin/python bench/soak.py [--minutes 10] [--mail-rate 20] [--sample-seconds 10]

Prints each sample, then first/last/max and the least-squares slope per minute of both,
and the traffic totals. A flat slope after warm-up means no leak at this load."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import aiosmtplib
import tomlkit
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "soak-project-token-0123456789"
SIGNING_SECRET = "soak-signing-key-0123456789abcdefXY"
LINK = re.compile(rb"""https?://[^\s"'<>]+/c/[A-Za-z0-9_.\-]+""")
CHROME = {
    "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like"
                  " Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-US,en;q=0.9", "Sec-Fetch-Site": "none",
    "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-User": "?1",
}


@dataclass
class Totals:
    sent: int = 0
    refused: int = 0
    delivered: int = 0
    clicks: int = 0
    redirected: int = 0
    webhooks: int = 0
    links: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)


class Sink:
    def __init__(self, totals: Totals) -> None:
        self.totals = totals

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.totals.delivered += 1
        found = LINK.search(envelope.original_content or b"")
        if found:
            self.totals.links.put_nowait(found.group(0))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(tmp: Path, smtp: int, http: int, sink: int, hooks: int) -> dict[str, object]:
    return {
        "smtp": {"listen": f"127.0.0.1:{smtp}"},
        "upstream": {"url": f"smtp://127.0.0.1:{sink}"},
        "http": {"listen": f"127.0.0.1:{http}", "trusted_proxies": ["127.0.0.1/32"]},
        "tracking": {"base_url": "http://t.localhost:8080", "settle_seconds": 1,
                     "signing_keys": [{"id": "k1", "secret": SIGNING_SECRET}]},
        "store": {"url": f"sqlite:///{tmp / 'soak.db'}"},
        "api": {"team_token": "soak-team-token-0123456789"},
        "projects": [{
            "id": "soak", "sid": "soak1", "token": TOKEN,
            "routes": [{"id": "soak-main", "slug": "main", "default": True,
                        "track_clicks": True}],
            "webhooks": [{"id": "hook", "url": f"http://127.0.0.1:{hooks}/hook",
                          "secret": "whsec_soak_0123456789", "include_machine_events": True}],
        }],
    }


def message(n: int) -> bytes:
    return (
        f"From: a@soak.test\r\nTo: r{n}@example.org\r\nSubject: Soak {n}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f'<p>Hello <a href="https://example.com/item?n={n}">item {n}</a></p>\r\n'
    ).encode()


async def mail(port: int, rate: float, totals: Totals, until: float) -> None:
    n = itertools.count()
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        started = loop.time()
        i = next(n)
        try:
            await aiosmtplib.send(message(i), sender="a@soak.test",
                                  recipients=[f"r{i}@example.org"], hostname="127.0.0.1",
                                  port=port, username="u", password=TOKEN, timeout=30)
            totals.sent += 1
        except aiosmtplib.SMTPException:
            totals.refused += 1
        await asyncio.sleep(max(0.0, 1 / rate - (loop.time() - started)))


async def click(http: int, totals: Totals, until: float) -> None:
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        while loop.time() < until:
            try:
                link = (await asyncio.wait_for(totals.links.get(), 1)).decode()
            except TimeoutError:
                continue
            host, path = link.split("://", 1)[1].split("/", 1)
            n = totals.clicks
            headers = {**CHROME, "Host": host,
                       "X-Forwarded-For": f"198.51.{100 + n // 250 % 100}.{1 + n % 250}"}
            totals.clicks += 1
            async with session.get(f"http://127.0.0.1:{http}/{path}", headers=headers,
                                   allow_redirects=False) as answer:
                totals.redirected += answer.status == 302


def sample(pid: int) -> tuple[float, int]:
    """Resident memory (MB) and open file descriptors of the process and its children
    (the observation writer) together."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    rss_mb, fds = 0.0, 0
    for process in (pid, *map(int, children)):
        status = Path(f"/proc/{process}/status").read_text()
        rss_kb = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        rss_mb, fds = rss_mb + rss_kb / 1024, fds + len(os.listdir(f"/proc/{process}/fd"))
    return rss_mb, fds


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope, per minute."""
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    num = sum((t - mean_t) * (v - mean_v) for t, v in points)
    den = sum((t - mean_t) ** 2 for t, _ in points)
    return num / den * 60 if den else 0.0


async def watch(pid: int, every: float, until: float, totals: Totals
                ) -> list[tuple[float, float, int]]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    samples = []
    while True:
        rss, fds = sample(pid)
        t = loop.time() - start
        samples.append((t, rss, fds))
        print(f"{t:7.0f} s  rss {rss:7.1f} MB  fds {fds:4d}  sent {totals.sent}  delivered "
              f"{totals.delivered}  clicks {totals.redirected}  webhooks {totals.webhooks}",
              flush=True)
        if loop.time() + every > until:
            return samples
        await asyncio.sleep(every)


async def receiver(totals: Totals) -> tuple[web.AppRunner, int]:
    async def hook(request: web.Request) -> web.Response:
        await request.read()
        totals.webhooks += 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def main(args: argparse.Namespace) -> None:
    totals = Totals()
    loop = asyncio.get_running_loop()
    sink = await loop.create_server(lambda: SMTP(Sink(totals), decode_data=False),
                                    "127.0.0.1", 0)
    runner, hooks = await receiver(totals)
    smtp, http = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "soak.toml"
        sink_port = sink.sockets[0].getsockname()[1]
        path.write_text(tomlkit.dumps(config(Path(tmp), smtp, http, sink_port, hooks)))
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before any load
            [sys.executable, "-m", "relay.cli", "--log-level", "warning", "serve",
             "--config", str(path)], cwd=ROOT)
        try:
            await ready(http)
            until = loop.time() + args.minutes * 60
            work = [mail(smtp, args.mail_rate, totals, until), click(http, totals, until)]
            tasks = [asyncio.create_task(w) for w in work]
            samples = await watch(proc.pid, args.sample_seconds, until, totals)
            await asyncio.gather(*tasks)
        finally:
            proc.terminate()
            proc.wait(30)
            sink.close()
            await runner.cleanup()
    report(samples, totals, args)


async def ready(http: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"http://127.0.0.1:{http}/healthz") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit("clickrelay did not start")


def report(samples: list[tuple[float, float, int]], totals: Totals,
           args: argparse.Namespace) -> None:
    rss = [(t, r) for t, r, _ in samples]
    fds = [(t, float(f)) for t, _, f in samples]
    print(f"\n{args.minutes} min, mail {args.mail_rate}/s, {len(samples)} samples")
    print(f"rss MB: first {rss[0][1]:.1f}  last {rss[-1][1]:.1f}  "
          f"max {max(v for _, v in rss):.1f}  slope {slope(rss):+.2f} MB/min")
    print(f"fds:    first {fds[0][1]:.0f}  last {fds[-1][1]:.0f}  "
          f"max {max(v for _, v in fds):.0f}  slope {slope(fds):+.2f} /min")
    settled = [(t, r) for t, r in rss if t >= 60]
    if len(settled) >= 2:
        print(f"after the first minute: rss slope {slope(settled):+.2f} MB/min, fds slope "
              f"{slope([(t, v) for t, v in fds if t >= 60]):+.2f} /min")
    print(f"mail sent {totals.sent} (refused {totals.refused}), delivered {totals.delivered}; "
          f"clicks {totals.clicks}, redirected {totals.redirected}; webhooks {totals.webhooks}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--mail-rate", type=float, default=20.0, help="mails per second")
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    asyncio.run(main(parser.parse_args()))
