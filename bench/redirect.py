"""Redirect throughput and latency: clickrelay's ``/c/{token}`` (verify, store the
observation durably with group commit, 302) against a bare aiohttp handler that answers
302 with no work, alternating A/B in one run; the medians of the rounds are reported.

    .venv/bin/python bench/redirect.py [--requests 20000] [--rounds 3] [--connections 50]
                                       [--no-click-front] [--settle 10]
                                       [--links 2000] [--addresses 1]
                                       [--message-links 20] [--backlog-every 0]
                                       [--promotion-processes 1]

Both servers run as child processes; the load generator is a third process (an asyncio
HTTP/1.1 client written for the purpose: 50 keep-alive connections, one request in
flight on each, a bounded number of requests per round). After the rounds clickrelay is
stopped and its SQLite file is opened to count the stored observations: every 302 it
sent must have one. Promotion runs as in production: ``settle_seconds`` is 10, as in
config.example.toml, so that the clicks of one round are classified while the next ones
are answered. After each saturated round of clickrelay the observations still waiting
for promotion past their settle time are counted (the promotion lag: it must not grow
from round to round), and at the end how many events were written. ``--settle 3600``
keeps promotion out of the measurement.

The clicks: ``--links`` distinct signed links, each of a message of its own, sent in turn
(each round starts again at the first). By default 2000 links from one client address, a
flood: every message is clicked again and again within seconds, from one place, which
promotion's context reads and classification find dense (a hundred neighbours a click).
A campaign's clicks, as production sees them, are many recipients' one or two clicks each
from their own addresses: ``--links 100000 --addresses 50000``, the addresses (from
198.18.0.0/15, set aside for benchmarks) sent in ``X-Forwarded-For`` from a trusted proxy,
as behind a load balancer (docs/deployment.md).

The clicked messages are in the store, as in production, each a copy of a newsletter with
``--message-links`` links (20), delivered, in submissions of 50 copies sharing one body
(as the relay keeps them): promotion reads each click's message and link. ``--message-links
0`` leaves them out, as the bench did before (promotion then classifies each click without
its message). ``--backlog-every`` counts the backlog during each saturated round of
clickrelay too, every so many seconds: whether it grows within the round.

The CPU time each server used in the saturated rounds is read from ``/proc`` (per thread:
the event loop's thread, the others, such as SQLite's, and the child processes, such as
clickrelay's observation writer) and reported per request, with the load generator's
own, so that a run shows whether the generator had CPU to spare and where the server's
time went."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import tomlkit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import Round, load_generator  # noqa: E402
from store.records import LinkRecord, NewMessage, SharedBody  # noqa: E402
from store.store import Store  # noqa: E402
from tracker.config import SigningKey  # noqa: E402
from tracker.tokens import ClickClaims, mint_token  # noqa: E402

SECRET = "bench-signing-key-0123456789abcdef"
HOST = "pbench1.t.localhost:8080"
DESTINATION = "https://shop.example.com/item?id=12345&utm_source=newsletter&utm_medium=email"

BARE_HANDLER = """
import asyncio, sys
from aiohttp import web
async def click(request):
    return web.Response(status=302, headers={"Location": "https://shop.example.com/item",
                                             "Cache-Control": "no-store"})
async def main():
    app = web.Application()
    app.router.add_get("/c/{token:.*}", click)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1]), backlog=1024).start()
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of a process, from /proc."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def children_cpu(pid: int) -> dict[int, float]:
    """``thread_cpu`` of every child process of a process (clickrelay's observation
    writer), together."""
    out: dict[int, float] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{pid}/children") as f:
        for child in f.read().split():
            with contextlib.suppress(OSError):  # a child that ended meanwhile
                out.update(thread_cpu(int(child)))
    return out


def cpu_per_request(server: int, before: dict[str, dict[int, float]],
                    after: dict[str, dict[int, float]], requests: int) -> dict[str, float]:
    """µs per request: the server's event loop thread (its main thread), its other
    threads together, its child processes, and the load generator."""
    def used(name: str, threads: set[int]) -> float:
        return sum(after[name][t] - before[name].get(t, 0.0) for t in threads) * 1e6 / requests
    others = set(after["server"]) - {server}
    return {"loop": used("server", {server}), "threads": used("server", others),
            "children": used("children", set(after["children"])),
            "generator": used("generator", set(after["generator"]))}


# -- the servers and the rounds -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp: Path, http_port: int = 0, click_front: bool = True,
                 settle: float = 10.0, proxied: bool = False, promotions: int = 1) -> Path:
    """clickrelay's configuration for the bench: one project, links of ``HOST``; clicks
    answered by the listener's front, or by plain aiohttp (``[http] click_front``);
    ``proxied``: the load generator is a trusted proxy, whose X-Forwarded-For is believed."""
    http: dict[str, object] = {"listen": f"127.0.0.1:{http_port}", "click_front": click_front}
    if proxied:
        http["trusted_proxies"] = ["127.0.0.1/32"]
    settings = {
        "smtp": {"listen": f"127.0.0.1:{free_port()}"},
        "upstream": {"url": f"maildir:{tmp / 'outbox'}"},
        "http": http,
        "tracking": {"base_url": "http://t.localhost:8080", "settle_seconds": settle,
                     "signing_keys": [{"id": "k1", "secret": SECRET}],
                     "promotion_processes": promotions},
        "store": {"url": f"sqlite:///{tmp / 'clickrelay.db'}"},
        "api": {"team_token": "bench-team-token-0123456789"},
        "projects": [{"id": "bench", "sid": "bench1", "token": "bench-project-token-0123456789",
                      "routes": [{"id": "r", "slug": "r", "default": True, "track_clicks": True}]}],
    }
    path = tmp / "bench.toml"
    path.write_text(tomlkit.dumps(settings))
    return path


def start_clickrelay(tmp: Path, http_port: int, click_front: bool,
                     settle: float, proxied: bool, promotions: int = 1) -> subprocess.Popen[bytes]:
    path = write_config(tmp, http_port, click_front, settle, proxied, promotions)
    return subprocess.Popen([sys.executable, "-m", "relay.cli", "--log-level", "error", "serve",
                             "--config", str(path)], cwd=ROOT)


def start_bare(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", BARE_HANDLER, str(port)],
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


def wait_listening(port: int) -> None:
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


COPIES = 50  # copies of one submission, sharing its body


def message_id(i: int) -> str:
    """The id of the message of the ``i``-th link."""
    return f"0193c5a2-7b1e-7c3a-9f0e-{i:012d}"


async def store_messages(database: Path, count: int, links: int) -> None:
    """The messages of the first ``count`` links, delivered an hour ago: copies of a
    newsletter with ``links`` links, ``COPIES`` to a submission, through the store as the
    relay spools and records them."""
    store = await Store.open(database)
    try:
        sent = time.time_ns() // 1000 - 3_600_000_000
        records = tuple(LinkRecord(n, f"{DESTINATION}&n={n}", f"Link {n}") for n in range(links))
        for first in range(0, count, COPIES):
            submission = f"bench-submission-{first // COPIES}"
            body = SharedBody(submission, (b"Subject: News\r\n\r\n",
                                           *(b" <a>\r\n" for _ in range(links))))
            ids = [message_id(i) for i in range(first, min(first + COPIES, count))]
            await store.spool_messages([NewMessage(
                m, submission, "bench", "r", "news@bench.example", f"{m}@example.org", "News",
                "newsletter", {"campaign": "bench"}, True, sent, b"", records, shared=body,
                fills=tuple(b"t%d" % n for n in range(links))) for m in ids])
            await asyncio.gather(*(store.record_delivery(m, outcome="delivered", at=sent,
                                                         duration_ms=20) for m in ids))
    finally:
        await store.close()


def client_address(n: int) -> str:
    """The ``n``-th address of 198.18.0.0/15 (RFC 2544: for benchmarks)."""
    return f"198.{18 + (n >> 16) % 2}.{(n >> 8) & 255}.{n & 255}"


def click_requests(count: int, addresses: int = 1) -> list[bytes]:
    """Distinct signed links (one per message and link), sent as a browser would; from
    ``addresses`` clients in turn, named in X-Forwarded-For when more than one."""
    key = SigningKey("k1", SECRET)
    expires = int(time.time()) + 86_400
    out = []
    for i in range(count):
        claims = ClickClaims(message_id(i), i % 7, DESTINATION, "bench1", expires)
        forwarded = (f"X-Forwarded-For: {client_address(i % addresses)}\r\n"
                     if addresses > 1 else "")
        out.append(
            f"GET /c/{mint_token(key, claims)} HTTP/1.1\r\nHost: {HOST}\r\n{forwarded}"
            "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, "
            "like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n"
            "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
            "Accept-Language: en-GB,en;q=0.9\r\nSec-Fetch-Site: none\r\n"
            "Sec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\nSec-Fetch-User: ?1\r\n"
            "\r\n".encode()
        )
    return out


def counters(port: int) -> dict[str, float]:
    """clickrelay's dropped-click counter, its observation batch sizes and promotion's lag
    from a click to its event (sums and counts)."""
    wanted = ("clickrelay_observations_dropped_total", "clickrelay_observation_batch_size_sum",
              "clickrelay_observation_batch_size_count", "clickrelay_promotion_lag_seconds_sum",
              "clickrelay_promotion_lag_seconds_count")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        samples = dict(line.split(" ", 1) for line in response.read().decode().splitlines()
                       if line.startswith(wanted))
    return {name: float(samples.get(name, "nan")) for name in wanted}


def overdue(database: Path) -> int:
    """Observations past their settle time and not yet promoted: promotion's backlog."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        now_us = time.time_ns() // 1000
        return int(db.execute("SELECT COUNT(*) FROM observations WHERE state = 'pending'"
                              " AND promote_after < ?", (now_us,)).fetchone()[0])


class BacklogCounts:
    """Counts the backlog (``overdue``) every ``every`` seconds from now until ``stop``."""

    def __init__(self, database: Path, every: float) -> None:
        self.counts: list[tuple[float, int]] = []
        self._database = database
        self._every = every
        self._stopped = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._count, daemon=True)
        self._thread.start()

    def _count(self) -> None:
        while not self._stopped.wait(self._every):
            self.counts.append((time.monotonic() - self._started, overdue(self._database)))

    def stop(self) -> list[tuple[float, int]]:
        self._stopped.set()
        self._thread.join()
        return self.counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000, help="per saturated round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--paced-rate", type=float, default=1000.0,
                        help="requests/s of the paced rounds (0: none)")
    parser.add_argument("--paced-requests", type=int, default=5000)
    parser.add_argument("--no-click-front", dest="click_front", action="store_false",
                        help="clicks answered by plain aiohttp ([http] click_front = false)")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="[tracking] settle_seconds (3600: no promotion while measured)")
    parser.add_argument("--links", type=int, default=2000,
                        help="distinct signed links, each of a message of its own")
    parser.add_argument("--addresses", type=int, default=1,
                        help="client addresses the clicks come from (X-Forwarded-For)")
    parser.add_argument("--message-links", type=int, default=20,
                        help="links of each stored clicked message (0: not stored)")
    parser.add_argument("--promotion-processes", type=int, default=1,
                        help="[tracking] promotion_processes")
    parser.add_argument("--backlog-every", type=float, default=0.0,
                        help="seconds between counts of the backlog in a saturated round")
    args = parser.parse_args()
    if args.message_links and args.message_links < 7:
        parser.error("--message-links: 0, or at least 7 (the links clicked are 0 to 6)")
    if not 1 <= args.addresses <= 1 << 17:
        parser.error("--addresses: from 1 to 131072 (198.18.0.0/15)")
    requests = click_requests(args.links, args.addresses)
    parent, child = multiprocessing.get_context("spawn").Pipe()
    generator = multiprocessing.get_context("spawn").Process(target=load_generator,
                                                             args=(child,))
    generator.start()
    generator_pid = generator.pid
    assert generator_pid is not None

    def cpu_now(server: int) -> dict[str, dict[int, float]]:
        return {"server": thread_cpu(server), "children": children_cpu(server),
                "generator": thread_cpu(generator_pid)}

    def load(port: int, total: int, rate: float = 0.0, server: int = 0) -> Round:
        if server:
            before = cpu_now(server)
        parent.send((port, requests, total, args.connections, rate))
        result: Round = parent.recv()
        if server:
            after = cpu_now(server)
            cpu = cpu_per_request(server, before, after, total)
            result = Round(result.rps, result.p50_ms, result.p99_ms, result.statuses, cpu)
        return result

    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "clickrelay.db"
        if args.message_links:
            asyncio.run(store_messages(database, args.links, args.message_links))
        ports = {"clickrelay": free_port(), "bare": free_port()}
        relay = start_clickrelay(Path(tmp), ports["clickrelay"], args.click_front, args.settle,
                                 args.addresses > 1, args.promotion_processes)
        backlog: list[int] = []
        during: list[list[tuple[float, int]]] = []
        bare = start_bare(ports["bare"])
        results: dict[tuple[str, str], list[Round]] = {}
        try:
            wait_listening(ports["clickrelay"])
            for port in ports.values():
                results.setdefault(("warm-up", ""), []).append(load(port, 2000))
            pids = {"clickrelay": relay.pid, "bare": bare.pid}
            for _ in range(args.rounds):  # A/B/A/B: both see the same machine state
                for name, port in ports.items():
                    counting = (BacklogCounts(database, args.backlog_every)
                                if args.backlog_every and name == "clickrelay" else None)
                    results.setdefault(("saturated", name), []).append(
                        load(port, args.requests, server=pids[name]))
                    if counting is not None:
                        during.append(counting.stop())
                    if name == "clickrelay":
                        backlog.append(overdue(database))
                    if args.paced_rate:
                        results.setdefault(("paced", name), []).append(
                            load(port, args.paced_requests, args.paced_rate))
            seen = counters(ports["clickrelay"])
        finally:
            parent.send(None)
            generator.join()
            bare.terminate()
            relay.send_signal(signal.SIGTERM)
            relay.wait(60)
            bare.wait()
        with contextlib.closing(sqlite3.connect(database)) as db:
            stored = db.execute("SELECT COUNT(*) FROM observations").fetchone()[0]
            events = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    redirected = results[("warm-up", "")][0].statuses.get(302, 0) + sum(
        r.statuses.get(302, 0) for (mode, name), rounds in results.items()
        if name == "clickrelay" for r in rounds)
    report(args, results, redirected, stored, seen)
    print(f"promotion: settle {args.settle:g} s; overdue observations after each saturated "
          f"round: {', '.join(map(str, backlog))}; {events} events written by the end")
    for n, counts in enumerate(during, 1):
        if counts:  # a round shorter than --backlog-every has none
            print(f"promotion: overdue during saturated round {n}: "
                  + ", ".join(f"{count} at {at:.0f} s" for at, count in counts))
    lags = seen["clickrelay_promotion_lag_seconds_count"]
    if lags:
        mean = seen["clickrelay_promotion_lag_seconds_sum"] / lags
        print(f"promotion lag, click to event: {mean:.1f} s on average over {lags:.0f} events")


def report(args: argparse.Namespace, results: dict[tuple[str, str], list[Round]],
           redirected: int, stored: int, seen: dict[str, float]) -> None:
    print(f"{args.rounds} rounds per server and mode, {args.connections} keep-alive "
          f"connections, cpus={os.cpu_count()}, python {sys.version.split()[0]}, "
          f"click front {'on' if args.click_front else 'off'}; {args.links} links from "
          f"{args.addresses} address{'es' if args.addresses > 1 else ''}")
    medians: dict[tuple[str, str], dict[str, float]] = {}
    for (mode, name), rounds in results.items():
        if mode == "warm-up":
            continue
        m = medians[(mode, name)] = {k: statistics.median(getattr(r, k) for r in rounds)
                                     for k in ("rps", "p50_ms", "p99_ms")}
        statuses = sorted({s for r in rounds for s in r.statuses})
        print(f"{mode:>9} {name:>10}: {m['rps']:7.0f} req/s  p50 {m['p50_ms']:6.2f} ms  "
              f"p99 {m['p99_ms']:6.2f} ms  (rounds: {', '.join(f'{r.rps:.0f}' for r in rounds)}"
              f" req/s; statuses {statuses})")
    for name in ("clickrelay", "bare"):
        cpu = [r.cpu_us for r in results[("saturated", name)] if r.cpu_us]
        if cpu:
            m = {k: statistics.median(c[k] for c in cpu) for k in cpu[0]}
            total = m["loop"] + m["threads"] + m["children"]
            print(f"saturated {name:>10}: CPU per request {total:5.1f} µs "
                  f"(event loop thread {m['loop']:.1f}, other threads {m['threads']:.1f}, "
                  f"child processes {m['children']:.1f}); load generator "
                  f"{m['generator']:.1f} µs")
    ratio = medians[("saturated", "clickrelay")]["rps"] / medians[("saturated", "bare")]["rps"]
    # Each clickrelay round against the bare round right after it: the machine's state
    # changes between rounds more than within a pair.
    pairs = sorted(c.rps / b.rps for c, b in zip(results[("saturated", "clickrelay")],
                                                 results[("saturated", "bare")], strict=True))
    print(f"throughput ratio clickrelay/bare: {ratio:.2f} (of the medians); round by round "
          f"{statistics.median(pairs):.2f} median, {pairs[0]:.2f}–{pairs[-1]:.2f}")
    batches = seen["clickrelay_observation_batch_size_count"]
    print(f"clickrelay: {redirected} redirects, {stored} observations stored, "
          f"dropped counter {seen['clickrelay_observations_dropped_total']:.0f}; "
          f"{batches:.0f} transactions, "
          f"{seen['clickrelay_observation_batch_size_sum'] / batches:.1f} observations each")


if __name__ == "__main__":
    main()
