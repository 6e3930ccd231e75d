"""Data retention (README.md): finished data older than the retention period is purged
with everything that hangs off it; newer data and unfinished work are kept, however old.
Runs against a real SQLite store; ages are set by moving rows' times into the past."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from relay.config.load import ConfigError
from relay.maintenance import RetentionWorker
from store.db import now_us
from store.idempotency import KeyClaim
from store.records import LinkRecord, NewMessage, Observation
from store.store import Store
from store.webhooks import NewDelivery
from tests.conftest import write_config
from tracker.metrics import Metrics

DAY = 86_400_000_000
HOUR = 3_600_000_000



async def spool(store: Store, message_id: str, at: int, outcome: str | None) -> None:
    await store.spool_messages([NewMessage(
        message_id, "sub-" + message_id, "acme", "acme-outgoing", "a@acme.test",
        "r@example.org", "Hi", None, {}, True, at, b"body",
        (LinkRecord(0, "https://example.com/a"),),
    )])
    if outcome is not None:
        await store.record_delivery(message_id, outcome=outcome, at=at, duration_ms=1,
                                    code=250 if outcome == "delivered" else 550)


async def observe(store: Store, message_id: str, at: int, *, done: bool) -> None:
    await store.record_observations([Observation(
        message_id, 0, "https://example.com/a", "acme1", at, "GET", "UA", {}, None, "h", at,
    )])
    if done:
        await store.db.write_statement(
            "UPDATE observations SET state = 'done' WHERE message_id = ?", (message_id,))


async def event(store: Store, event_id: str, at: int) -> None:
    row = await store.db.fetchone("SELECT MAX(id) FROM observations")
    assert row is not None
    await store.db.write_statement(
        "INSERT INTO events (id, observation_id, message_id, project_id, link_index,"
        " destination, clicked_at, classification, probability, machine, counts_for_metrics,"
        " first_click, rules_version, created_at) VALUES (?, ?, 'm', 'acme', 0, 'd', ?,"
        " 'genuine', 0, 0, 1, 1, 'v1', ?)",
        (event_id, row[0], at, at),
    )


async def webhook(store: Store, delivery_id: str, at: int, event_id: str | None,
                  *, delivered: bool) -> None:
    await store.enqueue_delivery(NewDelivery(delivery_id, "acme", "hook", "message.clicked",
                                             "{}", at, event_id))
    await store.record_webhook_attempt(
        delivery_id, at=at, duration_ms=1, status_code=200 if delivered else 500,
        error=None if delivered else "boom", delivered=delivered,
        next_attempt_at=None if delivered else at,
    )


async def count(store: Store, sql: str, *params: Any) -> int:
    row = await store.db.fetchone(f"SELECT COUNT(*) FROM {sql}", params)
    assert row is not None
    return int(row[0])


async def test_purge_removes_finished_data_older_than_the_cutoff_and_keeps_the_rest(
    store: Store,
) -> None:
    now = now_us()
    old, new = now - 40 * DAY, now - DAY
    await spool(store, "old-delivered", old, "delivered")
    await spool(store, "old-failed", old, "permanent")
    await spool(store, "old-queued", old, None)  # never delivered yet: kept
    await spool(store, "new-delivered", new, "delivered")
    await observe(store, "old-done", old, done=True)
    await event(store, "old-event", old)
    await observe(store, "old-pending", old, done=False)  # not promoted yet: kept
    await observe(store, "new-done", new, done=True)
    await event(store, "new-event", new)
    await webhook(store, "old-hook", old, "old-event", delivered=True)
    await webhook(store, "old-retrying", old, "old-event", delivered=False)  # pending: kept
    await webhook(store, "new-hook", new, "new-event", delivered=True)
    for key, at in (("old-key", now - 25 * HOUR), ("new-key", now - HOUR)):
        await store.claim_idempotency_keys("acme", [KeyClaim("send", key, "h")], at, 365 * DAY)
        await store.complete_idempotency_key("acme", "send", key, "{}")

    purged = await store.purge_expired(cutoff=now - 28 * DAY, keys_cutoff=now - 24 * HOUR)

    assert (purged.messages, purged.observations, purged.events) == (2, 1, 1)
    assert (purged.webhook_deliveries, purged.idempotency_keys) == (1, 1)
    messages = await store.db.fetchall("SELECT id FROM messages ORDER BY id")
    assert [r[0] for r in messages] == ["new-delivered", "old-queued"]
    assert await count(store, "links") == 2
    assert await count(store, "delivery_attempts") == 1  # new-delivered's
    observations = await store.db.fetchall("SELECT message_id FROM observations ORDER BY id")
    assert [r[0] for r in observations] == ["old-pending", "new-done"]
    assert [r[0] for r in await store.db.fetchall("SELECT id FROM events")] == ["new-event"]
    hooks = await store.db.fetchall("SELECT id, event_id FROM webhook_deliveries ORDER BY id")
    assert [tuple(r) for r in hooks] == [("new-hook", "new-event"), ("old-retrying", None)]
    assert await count(store, "webhook_attempts WHERE delivery_id = 'old-hook'") == 0
    keys = await store.db.fetchall("SELECT key FROM idempotency_keys")
    assert [r[0] for r in keys] == ["new-key"]


async def test_purge_works_through_more_rows_than_one_batch(store: Store) -> None:
    now, old = now_us(), now_us() - 30 * DAY
    await store.spool_messages([
        NewMessage(f"m{i:04}", "s", "acme", "acme-outgoing", "a@acme.test", "r@example.org",
                   None, None, {}, True, old, b"body", (LinkRecord(0, "https://e.com/"),))
        for i in range(1201)
    ])
    await store.db.write_statement(
        "UPDATE messages SET status = 'delivered', body = NULL, finished_at = ?", (old,))
    purged = await store.purge_expired(cutoff=now - 28 * DAY, keys_cutoff=now - 24 * HOUR)
    assert purged.messages == 1201 and purged.total == 1201
    assert await count(store, "messages") == 0
    assert await count(store, "links") == 0


async def test_retention_worker_uses_the_configured_period_and_counts(
    tmp_path: Path, settings: dict[str, Any], store: Store
) -> None:
    settings["retention"] = {"days": 7, "interval_minutes": 5}
    config = write_config(tmp_path / "clickrelay.toml", settings)
    now = now_us()
    await spool(store, "ten-days", now - 10 * DAY, "delivered")
    await spool(store, "five-days", now - 5 * DAY, "delivered")
    metrics = Metrics()
    purged = await RetentionWorker(lambda: config, store, metrics).purge()
    assert purged.messages == 1
    assert [r[0] for r in await store.db.fetchall("SELECT id FROM messages")] == ["five-days"]
    assert metrics.registry.get_sample_value(
        "clickrelay_retention_purged_total", {"table": "messages"}) == 1


@pytest.mark.parametrize(("table", "key", "value"), [
    ("retention", "days", 0), ("retention", "interval_minutes", -1),
    ("health", "max_overdue_minutes", 0), ("health", "gauge_interval_seconds", "10"),
])
def test_operations_settings_are_checked(
    tmp_path: Path, settings: dict[str, Any], table: str, key: str, value: Any
) -> None:
    settings[table] = {key: value}
    with pytest.raises(ConfigError, match=f"{table}.{key}: must be"):
        write_config(tmp_path / "clickrelay.toml", settings)
