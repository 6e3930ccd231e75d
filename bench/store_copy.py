"""What ``clickrelay store copy`` costs moving a SQLite store to PostgreSQL: a store of
``--observations`` clicks (the table that grows largest) and ``--mails`` spooled copies is
filled through the store's own methods, then copied by the real command, in a process of
its own, into a new schema; the copy's time, its rows per second and its largest resident
size are printed. The schema is dropped at the end.

    .venv/bin/python bench/store_copy.py [--observations 300000] [--mails 1000]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from store.clock import now_us  # noqa: E402
from store.records import LinkRecord, NewMessage, Observation  # noqa: E402
from store.store import Store  # noqa: E402

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"


async def fill(path: Path, observations: int, mails: int) -> None:
    store = await Store.open(path)
    now = now_us()
    try:
        for n in range(mails):
            await store.spool_messages([NewMessage(
                f"m{n}", f"s{n}", "acme", "acme-outgoing", "a@acme.test", f"r{n}@example.org",
                "Hello", None, {}, True, now, b"Subject: Hello\r\n\r\n" + b"x" * 4000 + b"\r\n",
                (LinkRecord(0, "https://example.com/a"),))])
        for start in range(0, observations, 5000):
            await store.record_observations([Observation(
                f"m{i % max(mails, 1)}", 0, "https://example.com/a", "acme1", now + i, "GET",
                UA, {"accept": "text/html"}, "residential", f"hash{i % 777}", now)
                for i in range(start, min(observations, start + 5000))])
    finally:
        await store.close()


async def schema(url: str, name: str, create: bool) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'CREATE SCHEMA "{name}"' if create
                           else f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=300_000)
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    name = f"bench_copy_{uuid.uuid4().hex[:8]}"
    target = f"{args.postgres}{'&' if '?' in args.postgres else '?'}search_path={name}"
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "clickrelay.db"
        asyncio.run(fill(source, args.observations, args.mails))
        asyncio.run(schema(args.postgres, name, create=True))
        try:
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "relay.cli", "store", "copy", "--from",
                 f"sqlite:///{source}", "--to", target], cwd=ROOT, capture_output=True,
                text=True, check=False)
            took = time.perf_counter() - started
        finally:
            asyncio.run(schema(args.postgres, name, create=False))
    if done.returncode != 0:
        sys.exit(done.stderr)
    rows = args.observations + 2 * args.mails + 1  # messages, links, observation_writer
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{rows} rows ({args.observations} observations, {args.mails} mails) in {took:.1f} s:"
          f" {rows / took:,.0f} rows/s, largest resident size {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
