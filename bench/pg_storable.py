"""What making text storable costs on PostgreSQL (store/postgres/storable.py): the check of a
statement's parameters, against the time the same statement takes, for batches of clicks
as the recorder writes them (one multi-row INSERT per batch).

    .venv/bin/python bench/pg_storable.py --url postgresql://user@host/db [--rounds 200]

The observations go into a schema of their own, dropped at the end. The check is timed on
the INSERT's own parameters: ASCII as most clicks are, text beyond ASCII (every value is
then encoded once to look for a lone surrogate), and one NUL (the rare path, where the
parameters are copied with U+FFFD in place)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from store.clicks import insert_statements, observation_values  # noqa: E402
from store.postgres.storable import storable  # noqa: E402
from store.records import Observation  # noqa: E402
from store.store import Store  # noqa: E402

AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/131.0.0.0 Safari/537.36")
HEADERS = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
           "accept-language": "en-GB,en;q=0.9", "sec-fetch-site": "none"}


def batch(size: int, agent: str) -> list[Observation]:
    return [Observation(message_id=f"m{i % 2000}", link_index=0, at=time.time_ns() // 1000,
                        destination="https://shop.example.com/item?id=12345",
                        project_sid="acme1", method="GET", user_agent=agent,
                        headers=HEADERS, network="residential", addr_hash="0123456789abcdef",
                        promote_after=0) for i in range(size)]


def check_us(params: list[object], rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        storable(params)
    return (time.perf_counter() - start) / rounds * 1e6


async def insert_us(store: Store, size: int, rounds: int) -> float:
    observations = batch(size, AGENT)
    start = time.perf_counter()
    for _ in range(rounds):
        await store.record_observations(observations)
    return (time.perf_counter() - start) / rounds * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="a PostgreSQL URL")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(args.url)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in args.url else "?"
    store = await Store.open(f"{args.url}{sep}{urlencode({'search_path': schema})}")
    try:
        print(f"{'rows':>5} {'INSERT µs':>10} {'ASCII µs':>9} {'non-ASCII µs':>13}"
              f" {'one NUL µs':>11} {'ASCII share':>12}")
        for size in (1, 25, 500):
            kinds = {}
            for name, agent in (("ascii", AGENT), ("wide", AGENT + " ü"),
                                ("nul", AGENT + "\x00")):
                [(_, params)] = insert_statements(size, observation_values(batch(size, agent)))
                kinds[name] = check_us(params, args.rounds)
            insert = await insert_us(store, size, max(10, args.rounds // (size // 25 + 1)))
            print(f"{size:>5} {insert:>10.0f} {kinds['ascii']:>9.1f} {kinds['wide']:>13.1f}"
                  f" {kinds['nul']:>11.1f} {kinds['ascii'] / insert:>11.1%}")
    finally:
        await store.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
