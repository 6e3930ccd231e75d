"""The context promotion reads for a batch (store/context.py), on both databases, against
a plain reading of what it promises: each observation's neighbours on its message within
the window, at most ``hits_limit`` of them and the first in click order, together with
the message's honeypot hits at any time, itself left out, in click order.

The reads find the last neighbour kept by walking the message's index rather than by
numbering them all; these cases (ties in time, more neighbours than the limit, honeypot
hits inside and outside the window) are where the two could differ."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from store.context import HONEYPOT_HITS, Windows, _statements
from store.events import HitRecord
from store.records import Observation
from store.store import Store
from tests.conftest import sqlite_plan

S = 1_000_000
HONEYPOT = 1_000_000
BASE = 1_700_000_000 * S


def _observations(rng: random.Random, count: int) -> list[Observation]:
    messages = [f"m{n}" for n in range(4)]
    out = []
    for _ in range(count):
        at = BASE + rng.randrange(40) * S // 2  # half-second steps: many ties in time
        link = HONEYPOT if rng.random() < 0.1 else rng.randrange(3)
        out.append(Observation(rng.choice(messages), link, "https://example.com/", "acme1",
                               at, "GET", rng.choice(("ua-a", "ua-b")), {}, None,
                               f"addr-{rng.randrange(3)}", at))
    return out


def _expected(stored: list[Observation], windows: Windows) -> dict[int, tuple[HitRecord, ...]]:
    def record(o: Observation) -> HitRecord:
        assert o.id is not None
        return HitRecord(o.id, o.at, o.link_index, o.addr_hash, o.user_agent,
                         o.link_index == windows.honeypot_index)

    in_order = sorted(stored, key=lambda o: (o.at, o.id or 0))
    out = {}
    for o in stored:
        assert o.id is not None
        near = [h for h in in_order if h.message_id == o.message_id and h.id != o.id
                and abs(h.at - o.at) <= windows.hits_us][:windows.hits_limit]
        bait = [h for h in in_order if h.message_id == o.message_id
                and h.link_index == windows.honeypot_index][:HONEYPOT_HITS]
        hits = {h.id: record(h) for h in near + bait if h.id != o.id}
        out[o.id] = tuple(sorted(hits.values(), key=lambda h: (h.at, h.observation_id)))
    return out


@pytest.mark.parametrize("seed", range(3))
async def test_neighbours_as_promised(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    await store.record_observations(_observations(rng, 80))
    stored = await store.claim_due_observations("w", BASE + 3600 * S, 60 * S, 1000)
    assert len(stored) == 80
    for limit in (1, 2, 5, 1000):
        windows = Windows(hits_us=3 * S, fanout_us=120 * S, fanout_cap=100,
                          honeypot_index=HONEYPOT, hits_limit=limit)
        batch = rng.sample(stored, 30)
        context = await store.promotion_context(batch, windows)
        expected = _expected(stored, windows)
        assert {o.id: context.hits[o.id] for o in batch if o.id is not None} == {
            o.id: expected[o.id] for o in batch if o.id is not None}


async def test_the_fan_out_is_counted_from_the_address_index_alone(tmp_path: Path) -> None:
    """The distinct messages an address clicked within the window are counted from
    observations_address, which holds each click's message, without reading the clicks
    themselves (SQLite's plan)."""
    details = await sqlite_plan(tmp_path, _statements("sqlite")[4], (100, "[]"))
    assert any("USING COVERING INDEX observations_address " in d for d in details), details
