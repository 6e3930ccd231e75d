"""Stored row ids (store/ids.py): UUIDs of version 7, in the order they were made, so that
new rows land at the end of the indexes keyed by them; and the ids the relay gives its
messages, events and webhook deliveries are such ids."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from relay.server import running
from store.ids import new_id
from tests.clicking import click_as_person, events_of, send_tracked, with_webhooks
from tests.conftest import write_config
from tests.receiver import Receiver
from tests.sink import Sink


def test_ids_are_version_7_in_the_order_they_were_made() -> None:
    before_ms = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(5000)]
    after_ms = time.time_ns() // 1_000_000
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # strictly increasing as text
    assert all(before_ms <= u.int >> 80 <= after_ms for u in parsed)  # their first 48 bits


async def test_messages_events_and_deliveries_get_time_ordered_ids(
    settings: dict[str, Any], config_path: Path, receiver: Receiver, sink: Sink
) -> None:
    with_webhooks(settings, receiver.url, people=False)
    async with running(write_config(config_path, settings)) as relay:
        sent = await send_tracked(relay, sink, '<a href="https://example.com/x">X</a>',
                                  rcpts=[f"r{n}@example.org" for n in range(4)])
        assert all(uuid.UUID(s.message_id).version == 7 for s in sent)
        first, second = sent[:2]
        await click_as_person(relay, first.link(0))
        [one] = await events_of(relay, first.message_id, 1)
        await click_as_person(relay, second.link(0))
        [two] = await events_of(relay, second.message_id, 1)
        assert uuid.UUID(one.id).version == 7 and one.id < two.id
        deliveries = [d for e in (one, two)
                      for d in await relay.store.deliveries_of_event(e.id)]
        assert deliveries and all(uuid.UUID(d.id).version == 7 for d in deliveries)
