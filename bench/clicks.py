"""Click pipeline throughput after the redirect: promotion of stored observations to
classified events (with their outbox rows), and webhook dispatch to a local receiver.

    .venv/bin/python bench/clicks.py [--observations 20000] [--workers 1] [--deliveries 5000]

Promotion: observations of 2000 messages (5 links each, one address in ten a scanner's
burst) are written to a fresh SQLite file, then ``--workers`` promotion workers, each with
its own connection as separate processes would have, promote them all; the rate is
observations per second. Dispatch: ``--deliveries`` bodies are put in the outbox and the
dispatcher posts them to an aiohttp receiver on loopback that answers 200; the rate is
deliveries per second (each claimed, signed, posted, and its attempt recorded)."""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store.ids import new_id
from store.records import LinkRecord, NewMessage, Observation
from store.store import Store
from store.webhooks import NewDelivery
from tracker.classify.rules import DEFAULT_RULES
from tracker.config import ProjectConfig, WebhookConfig, WebhookDeliveryConfig
from tracker.metrics import Metrics
from tracker.promote import PromotionWorker
from tracker.promotion_report import metrics_report
from tracker.webhooks.dispatch import WebhookDispatcher

S = 1_000_000
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
HEADERS = {"accept": "text/html", "accept-language": "en", "sec-fetch-mode": "navigate"}


@dataclass(frozen=True)
class View:
    projects: tuple[ProjectConfig, ...]
    webhook_delivery: WebhookDeliveryConfig = field(default_factory=WebhookDeliveryConfig)


async def fill(store: Store, count: int, now: int, messages_count: int = 2000,
               links: int = 5) -> None:
    rng = random.Random(1)  # the same observations every run: instruction counts compare
    messages = [new_id() for _ in range(messages_count)]  # time-ordered, as the relay's
    await store.spool_messages([
        NewMessage(m, "s", "acme", "r", "a@acme.test", f"{m}@example.org", "Hi", None, {},
                   True, now - 3600 * S, b"x",
                   tuple(LinkRecord(i, f"https://example.com/{i}", f"Link {i}")
                         for i in range(links)))
        for m in messages])
    batch = []
    for n in range(count):
        at = now - 600 * S + n * 1000
        batch.append(Observation(rng.choice(messages), rng.randrange(links), "https://example.com/",
                                 "acme1", at, "GET", CHROME, dict(HEADERS), None,
                                 f"addr-{rng.randrange(count // 10 + 1)}", at))
    await store.record_observations(batch)


async def promotion(path: Path, count: int, workers: int) -> float:
    store = await Store.open(path)
    now = time.time_ns() // 1000
    await fill(store, count, now)
    hooks = (WebhookConfig("h", "http://127.0.0.1:9/", "whsec_x"),)
    view = View((ProjectConfig("acme", "acme1", "t", webhooks=hooks),))
    stores = [store] + [await Store.open(path) for _ in range(workers - 1)]
    runners = [PromotionWorker(lambda: view, s, metrics_report(Metrics()),
                               lambda: DEFAULT_RULES)
               for s in stores]
    started = time.perf_counter()
    while sum(await asyncio.gather(*(w.promote_due() for w in runners))):
        pass
    elapsed = time.perf_counter() - started
    for s in stores:
        await s.close()
    return count / elapsed


async def dispatch(path: Path, count: int) -> float:
    received = asyncio.Event()
    seen = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal seen
        await request.read()
        seen += 1
        if seen == count:
            received.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]
    hook = WebhookConfig("h", f"http://127.0.0.1:{port}/hook", "whsec_x")
    view = View((ProjectConfig("acme", "acme1", "t", webhooks=(hook,)),),
                WebhookDeliveryConfig(concurrency=8, per_webhook_concurrency=8))
    store = await Store.open(path)
    now = time.time_ns() // 1000
    body = '{"id":"x","event":"message.clicked","data":{"message_id":"m"}}' + " " * 900
    for _ in range(count):
        await store.enqueue_delivery(NewDelivery(new_id(), "acme", "h",
                                                 "message.clicked", body, now))
    dispatcher = WebhookDispatcher(lambda: view, store, Metrics())
    started = time.perf_counter()
    task = asyncio.create_task(dispatcher.run())
    await received.wait()
    elapsed = time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await store.close()
    await runner.cleanup()
    return count / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--deliveries", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rate = await promotion(Path(tmp) / "p.db", args.observations, args.workers)
        print(f"promotion: {rate:,.0f} observations/s "
              f"({args.observations} observations, {args.workers} worker(s))")
        rate = await dispatch(Path(tmp) / "d.db", args.deliveries)
        print(f"dispatch:  {rate:,.0f} deliveries/s ({args.deliveries} deliveries, "
              "8 in flight)")


if __name__ == "__main__":
    asyncio.run(main())
