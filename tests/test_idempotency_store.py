"""Idempotency keys in the store (store/idempotency.py), on a SQLite file and on a PostgreSQL
schema of its own: a key held by a request that died is free again after its lease, and two
claims of one key at once, from two stores on one database (two nodes), give it to one."""

from __future__ import annotations

import asyncio

from store.idempotency import IN_FLIGHT, IN_FLIGHT_LEASE_US, MISMATCH, NEW, KeyClaim
from store.store import Store

DAY_US = 24 * 3600 * 1_000_000
NOW = 1_700_000_000_000_000


async def test_a_key_in_flight_longer_than_its_lease_is_free_again(store: Store) -> None:
    claim = KeyClaim("send", "order-1", "hash-a")
    [first] = await store.claim_idempotency_keys("acme", [claim], NOW, DAY_US)
    assert first.state == NEW
    # Held by a request that is (for all anyone knows) still at work: refused.
    [held] = await store.claim_idempotency_keys(
        "acme", [claim], NOW + IN_FLIGHT_LEASE_US - 1, DAY_US)
    assert held.state == IN_FLIGHT
    # Its request would have spooled long since: it died with its node, the key is free,
    # even for another body.
    [again] = await store.claim_idempotency_keys(
        "acme", [KeyClaim("send", "order-1", "hash-b")], NOW + IN_FLIGHT_LEASE_US + 1, DAY_US)
    assert again.state == NEW
    [taken] = await store.claim_idempotency_keys(
        "acme", [claim], NOW + IN_FLIGHT_LEASE_US + 2, DAY_US)
    assert taken.state == MISMATCH  # the new claim holds it, with its own body


async def test_two_stores_claiming_one_key_at_once_give_it_to_one(store: Store) -> None:
    other = await Store.open(store.where)  # a second node on the same database
    try:
        for n in range(10):
            claim = KeyClaim("send", f"order-{n}", "hash-a")
            states = await asyncio.gather(
                store.claim_idempotency_keys("acme", [claim], NOW, DAY_US),
                other.claim_idempotency_keys("acme", [claim], NOW, DAY_US))
            assert sorted(s.state for [s] in states) == [IN_FLIGHT, NEW], n
    finally:
        await other.close()
