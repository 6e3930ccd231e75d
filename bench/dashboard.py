"""Dashboard page times on a large store: 100 000 messages and 1 000 000 click events.

    .venv/bin/python bench/dashboard.py [--messages 100000] [--clicks-per-message 10]
                                        [--rounds 20] [--db PATH]

The store is filled with SQL (a recursive CTE per table, a few seconds) in a fresh SQLite
file, or kept at ``--db`` and reused when it exists: 100 000 copies of one project over 90
days (two routes, three tags, 5 links each) and 10 click events per copy (one in four a
scanner's, one in ten a link preview's, the rest genuine). clickrelay then serves it on
loopback and each page is fetched ``--rounds`` times by a signed-in client; the table gives
the first request's time (the activity chart counts the periods it has not counted before),
the median and the 95th percentile of the whole request (server and client on one machine).
Results: docs/performance.md, "Dashboard pages"."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import tomlkit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relay.config.load import load_config
from relay.server import running
from store.backend import Tx
from store.store import Store
from tests.conftest import base_settings
from tests.dashboard_helpers import CSRF, Visitor, with_dashboard

S = 1_000_000
DAYS = 90


async def fill(path: Path, messages: int, per_message: int) -> None:
    store = await Store.open(path)
    step = DAYS * 86400 * S // messages
    now = time.time_ns() // 1000
    start = time.perf_counter()

    async def work(tx: Tx) -> None:
        await tx.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 - 1)"
            " INSERT INTO messages (id, submission_id, project_id, route_id, mail_from,"
            " rcpt_to, subject, tag, metadata, track_clicks, created_at, status, attempts,"
            " next_attempt_at, finished_at)"
            " SELECT printf('m%08d', i), printf('s%08d', i), 'acme',"
            " CASE i % 3 WHEN 0 THEN 'acme-news' ELSE 'acme-outgoing' END, 'shop@acme.test',"
            " printf('user%d@example.org', i), printf('Order %d confirmed', i),"
            " CASE i % 4 WHEN 0 THEN 'spring' WHEN 1 THEN 'receipts' ELSE NULL END, '{}', 1,"
            " ?2 - (?1 - i) * ?3, 'delivered', 1, ?2 - (?1 - i) * ?3, ?2 - (?1 - i) * ?3"
            " FROM n", (messages, now, step))
        await tx.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 * 5 - 1)"
            " INSERT INTO links (message_id, link_index, destination, anchor_text)"
            " SELECT printf('m%08d', i / 5), i % 5, printf('https://shop.example.com/%d', i % 5),"
            " printf('Link %d', i % 5) FROM n", (messages,))
        await tx.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 * ?4 - 1)"
            " INSERT INTO events (id, observation_id, message_id, project_id, link_index,"
            " destination, clicked_at, classification, probability, machine,"
            " counts_for_metrics, first_click, reason_codes, rules, rules_version,"
            " device_type, client_type, client_name, user_agent, created_at)"
            " SELECT printf('e%09d', i), i, printf('m%08d', i / ?4), 'acme', i % 5,"
            " printf('https://shop.example.com/%d', i % 5),"
            " ?2 - (?1 - i / ?4) * ?3 + (i % ?4) * 60000000,"
            " CASE WHEN i % 4 = 0 THEN 'security_scanner' WHEN i % 10 = 1 THEN 'link_preview'"
            " ELSE 'genuine' END,"
            " CASE WHEN i % 4 = 0 OR i % 10 = 1 THEN 97 ELSE 3 END,"
            " i % 4 = 0 OR i % 10 = 1, NOT (i % 4 = 0 OR i % 10 = 1), i % ?4 = 2,"
            " '[]', '[]', 'bench', 'desktop', 'browser', 'Chrome', 'Mozilla/5.0',"
            " ?2 - (?1 - i / ?4) * ?3 + (i % ?4) * 60000000 FROM n",
            (messages, now, step, per_message))
        await tx.execute("ANALYZE")

    await store.db.write(work)
    await store.close()
    print(f"filled {messages} messages and {messages * per_message} clicks in "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr)


def pages(messages: int) -> list[tuple[str, str]]:
    middle = f"m{messages // 2:08d}"
    return [
        ("projects", "/"),
        ("routes", "/projects/acme/routes"),
        ("route settings", "/routes/acme-outgoing"),
        ("activity, 7 days", "/projects/acme/activity"),
        ("activity, 30 days, machine", "/projects/acme/activity?period=30d&machine=1"),
        ("activity, 90 days, machine", "/projects/acme/activity?period=90d&machine=1"),
        ("activity, 24 h, one route", "/projects/acme/activity?period=24h&route=acme-news"),
        ("activity, 30 days, one tag", "/projects/acme/activity?period=30d&tag=spring"),
        ("messages, first page", "/projects/acme/messages"),
        ("messages, search a recipient", f"/projects/acme/messages?search=user{messages // 2}@"),
        ("messages, search a tag", "/projects/acme/messages?search=receipts"),
        ("messages, search with no hit", "/projects/acme/messages?search=nobody-at-all"),
        ("a message, machine clicks too", f"/messages/{middle}?machine=1"),
        ("spool", "/spool"),
    ]


async def measure(db: Path, messages: int, rounds: int) -> list[tuple[str, float, float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = with_dashboard(base_settings(Path(tmp), 9))
        settings["store"]["url"] = f"sqlite:///{db}"
        settings["retention"] = {"days": 3650}
        config_path = Path(tmp) / "clickrelay.toml"
        config_path.write_text(tomlkit.dumps(settings), encoding="utf-8")
        async with running(load_config(config_path)) as relay, Visitor(relay) as visitor:
            status, _, _ = await visitor.sign_in()
            assert status == 302
            results = []
            for name, path in pages(messages):
                times = []
                for _ in range(rounds):
                    start = time.perf_counter()
                    status, _, page = await visitor.get(path)
                    times.append((time.perf_counter() - start) * 1000)
                    assert status == 200 and CSRF.search(page), (name, status)
                first = times[0]
                times.sort()
                p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                results.append((name, first, statistics.median(times), p95))
            return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--clicks-per-message", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--db", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "bench.db"
        if not db.exists():
            asyncio.run(fill(db, args.messages, args.clicks_per_message))
        results = asyncio.run(measure(db, args.messages, args.rounds))
    print(f"| page ({args.messages} messages, {args.messages * args.clicks_per_message} "
          "clicks) | first ms | median ms | p95 ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, first, median, p95 in results:
        print(f"| {name} | {first:.1f} | {median:.1f} | {p95:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
