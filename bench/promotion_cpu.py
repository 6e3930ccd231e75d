"""Instructions per promoted observation, without the machine's noise: bench/clicks.py's
observations promoted by one worker from a store file filled beforehand, so that a run
under callgrind counts the promotion (claims, context reads, classification, the events
and their deliveries written) and not the filling.

    .venv/bin/python bench/promotion_cpu.py fill /tmp/p.db --observations 3000 --messages 300
    valgrind --tool=callgrind --callgrind-out-file=/tmp/p.cg \\
        .venv/bin/python bench/promotion_cpu.py promote /tmp/p.db

A run on a store filled with ``--observations 0`` counts what is not per observation
(start, imports, the user-agent tables); the difference of the two totals divided by the
observations is the cost of one. bench/clicks.py spreads 20 000 observations over 2000
messages, ten a message, each with its neighbours; a smaller fill keeps that density with a
tenth as many messages as observations. The fill is the same every time (seeded), and a
fill is used up by its promotion: fill again before the next run."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from clicks import View, fill  # noqa: E402

from store.store import Store  # noqa: E402
from tracker.classify.rules import DEFAULT_RULES  # noqa: E402
from tracker.classify.useragent import preload  # noqa: E402
from tracker.config import ProjectConfig, WebhookConfig  # noqa: E402
from tracker.metrics import Metrics  # noqa: E402
from tracker.promote import PromotionWorker  # noqa: E402
from tracker.promotion_report import metrics_report  # noqa: E402

S = 1_000_000


async def fill_store(path: Path, count: int, messages: int, links: int) -> None:
    store = await Store.open(path)
    await fill(store, count, time.time_ns() // 1000, messages, links)
    await store.close()


async def promote(path: Path) -> None:
    preload()  # the user-agent tables are built once per process, not per observation
    store = await Store.open(path, sync_commits=False)  # as promotion's process opens it
    hooks = (WebhookConfig("h", "http://127.0.0.1:9/", "whsec_x"),)
    view = View((ProjectConfig("acme", "acme1", "t", webhooks=hooks),))
    worker = PromotionWorker(lambda: view, store, metrics_report(Metrics()),
                             lambda: DEFAULT_RULES)
    started, promoted = time.perf_counter(), 0
    while claimed := await worker.promote_due():
        promoted += claimed
    elapsed = time.perf_counter() - started
    await store.close()
    print(f"promoted {promoted} observations in {elapsed:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("fill", "promote"))
    parser.add_argument("store", type=Path)
    parser.add_argument("--observations", type=int, default=3000)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--links", type=int, default=5,
                        help="links a message (a newsletter has 20 to 60)")
    args = parser.parse_args()
    if args.step == "fill":
        if args.store.exists():
            raise SystemExit(f"{args.store} exists: fill a fresh file")
        asyncio.run(fill_store(args.store, args.observations, args.messages, args.links))
    else:
        asyncio.run(promote(args.store))


if __name__ == "__main__":
    main()
