"""Open pixels against clicks: opens per second through clickrelay's ``/o/{token}`` (verify,
store the observation durably with group commit, the 43-byte GIF) against clicks per
second through ``/c/{token}`` (the same, and a 302), alternating in one run against one
clickrelay; the medians of the rounds are reported (docs/performance.md, "Open pixels").

    .venv/bin/python bench/opens.py [--requests 10000] [--rounds 3] [--connections 50]
                                    [--no-click-front]

clickrelay and the load generator are bench/redirect.py's (child processes; 50 keep-alive
connections, one request in flight on each). Promotion is kept out of the measurement
(``settle_seconds`` 3600). At the end clickrelay is stopped and its SQLite file is read:
every 302 and every 200 must have its observation, opens with the link index -1."""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadgen import Round, load_generator
from bench.redirect import (
    HOST,
    SECRET,
    click_requests,
    free_port,
    start_clickrelay,
    wait_listening,
)
from tracker.config import SigningKey
from tracker.tokens import OpenClaims, mint_open_token


def open_requests(count: int) -> list[bytes]:
    """Distinct signed pixels (one per message), fetched as Apple Mail fetches images."""
    key = SigningKey("k1", SECRET)
    expires = int(time.time()) + 86_400
    tokens = [mint_open_token(key, OpenClaims(f"0193c5a2-7b1e-7c3a-9f0e-{i:012d}", "bench1",
                                              expires)) for i in range(count)]
    return [
        f"GET /o/{token} HTTP/1.1\r\nHost: {HOST}\r\n"
        "User-Agent: Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko)\r\nAccept: image/webp,image/avif,image/*,*/*;q=0.8\r\n"
        "Accept-Language: en-GB,en;q=0.9\r\n\r\n".encode()
        for token in tokens
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10_000, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--no-click-front", dest="click_front", action="store_false")
    args = parser.parse_args()
    kinds = {"clicks /c": click_requests(2000), "opens /o": open_requests(2000)}
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    generator = context.Process(target=load_generator, args=(child,))
    generator.start()
    results: dict[str, list[Round]] = {name: [] for name in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        relay = start_clickrelay(Path(tmp), port, args.click_front, 3600.0, False)
        try:
            wait_listening(port)
            for requests in kinds.values():  # warm-up
                parent.send((port, requests, 2000, args.connections, 0.0))
                parent.recv()
            for _ in range(args.rounds):  # A/B/A/B: both see the same machine state
                for name, requests in kinds.items():
                    parent.send((port, requests, args.requests, args.connections, 0.0))
                    results[name].append(parent.recv())
        finally:
            parent.send(None)
            generator.join()
            relay.send_signal(signal.SIGTERM)
            relay.wait(60)
        with contextlib.closing(sqlite3.connect(Path(tmp) / "clickrelay.db")) as db:
            opens, clicks = db.execute(
                "SELECT COUNT(*) FILTER (WHERE link_index < 0),"
                " COUNT(*) FILTER (WHERE link_index >= 0) FROM observations").fetchone()
    report(args, results, opens, clicks)


def report(args: argparse.Namespace, results: dict[str, list[Round]], opens: int,
           clicks: int) -> None:
    print(f"{args.rounds} rounds of {args.requests} requests each, {args.connections} "
          f"keep-alive connections, click front {'on' if args.click_front else 'off'}")
    medians = {}
    for name, rounds in results.items():
        m = medians[name] = {k: statistics.median(getattr(r, k) for r in rounds)
                             for k in ("rps", "p50_ms", "p99_ms")}
        statuses = sorted({s for r in rounds for s in r.statuses})
        print(f"{name}: {m['rps']:7.0f} req/s  p50 {m['p50_ms']:6.2f} ms  p99 "
              f"{m['p99_ms']:6.2f} ms  (rounds: {', '.join(f'{r.rps:.0f}' for r in rounds)}"
              f" req/s; statuses {statuses})")
    pairs = sorted(o.rps / c.rps for c, o in zip(results["clicks /c"], results["opens /o"],
                                                 strict=True))
    ratio = medians["opens /o"]["rps"] / medians["clicks /c"]["rps"]
    print(f"opens/clicks throughput: {ratio:.2f} (of the medians); round by round "
          f"{statistics.median(pairs):.2f} median, {pairs[0]:.2f}–{pairs[-1]:.2f}")
    answered = {name: sum(r.statuses.get(200 if "opens" in name else 302, 0) for r in rounds)
                for name, rounds in results.items()}
    print(f"observations stored: {opens} opens, {clicks} clicks (answered in the measured "
          f"rounds: {answered['opens /o']} images, {answered['clicks /c']} redirects; the "
          "warm-up's 2000 of each come on top)")


if __name__ == "__main__":
    main()
