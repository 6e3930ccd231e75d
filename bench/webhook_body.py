"""What writing one webhook body costs: a ``message.clicked`` envelope as promotion makes it
for every webhook of every click (a browser's agent, a subject and an anchor text with
accents, metadata), written by ``envelope_body`` (orjson) and by the standard library's
``json.dumps`` with the same settings, which it replaced; best of ``--runs``.

    .venv/bin/python bench/webhook_body.py [--runs 7] [--number 20000]"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store.events import EventRecord
from store.records import MessageInfo
from tracker.webhooks.events import (
    Envelope,
    _plain,
    click_event,
    envelope_body,
    iso_timestamp,
)

AT = 1_900_000_000_123_456
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")


def envelope() -> Envelope:
    event = EventRecord(
        id="0193c5a2-7b1e-7c3a-9f0e-00000000000e", observation_id=1,
        message_id="0193c5a2-7b1e-7c3a-9f0e-000000000001", project_id="acme", link_index=3,
        destination="https://acme.example/p/3?utm_source=mail", clicked_at=AT,
        classification="genuine", probability=4, machine=False, counts_for_metrics=True,
        first_click=True, proxy_type=None, reason_codes=(), rules=(), rules_version="2025.1",
        device_type="desktop", client_type="browser", client_name="Chrome", user_agent=CHROME,
        created_at=AT + 10_000_000)
    message = MessageInfo(
        "0193c5a2-7b1e-7c3a-9f0e-000000000001", "s", "acme", "acme-news", "news@acme.example",
        "léa@example.org", "Les nouveautés de décembre", "newsletter",
        {"campaign": "2026-12", "segment": "fr"}, True, AT - 3_600_000_000, "delivered", 1,
        AT, None, AT - 3_500_000_000)
    return Envelope("0193c5a2-7b1e-7c3a-9f0e-00000000000f", "message.clicked",
                    iso_timestamp(AT + 10_000_000), click_event(event, message, "Voir l’offre"))


def standard(e: Envelope) -> str:
    return json.dumps({"id": e.id, "event": e.event, "timestamp": e.timestamp, "data": e.data},
                      ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                      default=_plain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    e = envelope()
    assert envelope_body(e) == standard(e)
    for name, write in (("envelope_body (orjson)", envelope_body), ("json.dumps", standard)):
        best = min(timeit.repeat(lambda w=write: w(e), number=args.number, repeat=args.runs))
        print(f"{name:24} {best / args.number * 1e6:6.2f} µs a body")


if __name__ == "__main__":
    main()
