"""The store's side of a click: observations written in batches (one multi-row INSERT, one
fsync each) into a fresh database as it grows, wall and CPU time per observation for
every block.

    .venv/bin/python bench/observation_store.py [--blocks 6] [--block 50000] [--batch 25]
        [--addresses 1] [--drop-index NAME ...] [--writer]

By default through ``Store.record_observations`` (aiosqlite's thread; CPU of this
process); with ``--writer`` through the observation writer process as the server writes
clicks (store/writer/client.py; CPU of this process and of the writer, apart).
``--drop-index`` removes an index of ``observations`` first, to see what its upkeep
costs. Observations are spread over 2000 messages (as bench/redirect.py's links are) and
come from one client address (as bench/redirect.py's do), or from ``--addresses`` picked
at random: then their keyed hashes land at random places in ``observations_address``, as
real recipients' clicks do."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from store.records import Observation  # noqa: E402
from store.store import Store  # noqa: E402
from store.writer.client import ObservationWriter  # noqa: E402

HEADERS = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
           "accept-language": "en-GB,en;q=0.9", "sec-fetch-site": "none",
           "sec-fetch-mode": "navigate", "sec-fetch-dest": "document", "sec-fetch-user": "?1"}
AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/131.0.0.0 Safari/537.36")
DESTINATION = "https://shop.example.com/item?id=12345&utm_source=newsletter&utm_medium=email"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--block", type=int, default=50_000, help="observations per block")
    parser.add_argument("--batch", type=int, default=25, help="observations per transaction")
    parser.add_argument("--addresses", type=int, default=1,
                        help="distinct client addresses the clicks come from, at random")
    parser.add_argument("--drop-index", action="append", default=[], metavar="NAME")
    parser.add_argument("--writer", action="store_true",
                        help="write through the observation writer process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(Path(tmp) / "clickrelay.db")
        for name in args.drop_index:
            await store.db.write_statement(f'DROP INDEX "{name}"')
        writer = ObservationWriter(store.db.path) if args.writer else None
        if writer is not None:
            await writer.start()
        try:
            target = writer or store
            draw = random.Random(1)
            addresses = [f"{draw.getrandbits(88):022x}" for _ in range(args.addresses)]
            written = 0
            for _ in range(args.blocks):
                wall, cpu = time.perf_counter(), time.process_time()
                child = writer_cpu(writer)
                for _ in range(args.block // args.batch):
                    now = time.time_ns() // 1000
                    batch = [Observation(f"0193c5a2-7b1e-7c3a-9f0e-{(written + i) % 2000:012d}",
                                         i % 7, DESTINATION, "bench1", now, "GET", AGENT, HEADERS,
                                         None, draw.choice(addresses), now + 3_600_000_000)
                             for i in range(args.batch)]
                    await target.record_observations(batch)
                    written += args.batch
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                line = (f"rows {written:8d}: {wall / args.block * 1e6:5.1f} µs wall, "
                        f"{cpu / args.block * 1e6:5.1f} µs CPU an observation")
                if writer is not None:
                    line += (f" here, {(writer_cpu(writer) - child) / args.block * 1e6:5.1f} µs in"
                             " the writer")
                print(line, flush=True)
        finally:  # an error must not leave the writer or the database thread behind
            if writer is not None:
                await writer.close()
            await store.close()


def writer_cpu(writer: ObservationWriter | None) -> float:
    """CPU seconds (user + system) the writer process has used, from /proc."""
    if writer is None or writer.pid is None:
        return 0.0
    with open(f"/proc/{writer.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    asyncio.run(main())
