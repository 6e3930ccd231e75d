"""Webhook dispatch (docs/webhooks.md): the signature the official SDK accepts, retries with the
same id, every attempt recorded, isolation of slow receivers, the retry window; the
dispatcher runs against a real SQLite store and posts to a real receiver on loopback."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from store.db import now_us
from store.records import ConfigItem
from store.store import Store
from store.webhooks import NewDelivery, WebhookRoom
from tests.conftest import base_settings, wait_until, write_config
from tests.receiver import Receiver, verified
from tracker.config import ProjectConfig, WebhookConfig, WebhookDeliveryConfig
from tracker.metrics import Metrics
from tracker.webhooks.dispatch import GONE, WebhookDispatcher, signature
from tracker.webhooks.events import (
    MESSAGE_CLICKED,
    Bot,
    ClickEvent,
    Envelope,
    envelope_body,
    iso_timestamp,
)
from tracker.workers import MAX_BACKOFF_SECONDS, backoff_seconds

SECRET = "whsec_test_secret_0123456789"
FAST = WebhookDeliveryConfig(retry_initial_seconds=0.01, timeout_seconds=10)


@dataclass(frozen=True)
class View:
    projects: tuple[ProjectConfig, ...]
    webhook_delivery: WebhookDeliveryConfig


def view(receiver: Receiver, *hooks: str, delivery: WebhookDeliveryConfig = FAST) -> View:
    webhooks = tuple(WebhookConfig(h, receiver.url(h), SECRET) for h in hooks)
    return View((ProjectConfig("acme", "acme1", "token", webhooks=webhooks),), delivery)


def sample_event() -> ClickEvent:
    return ClickEvent(
        message_id=str(uuid.uuid4()), subject="Grüße — 你好", metadata={"order": "42"},
        tag="receipts", recipient="rcpt@example.org", clicked_at=iso_timestamp(now_us()),
        destination_url="https://example.com/a/b?x=1&y=ü", link_index=0,
        anchor_text="Öffnen", first_click=True, device_type="desktop", client_type="browser",
        client_name="Firefox", user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:128.0) "
        "Gecko/20100101 Firefox/128.0",
        bot=Bot(False, 0, "genuine", None, (), False, True),
    )


async def enqueue(store: Store, hook: str, data: ClickEvent | None = None) -> NewDelivery:
    envelope = Envelope(str(uuid.uuid4()), MESSAGE_CLICKED, iso_timestamp(now_us()),
                        data or sample_event())
    delivery = NewDelivery(envelope.id, "acme", hook, MESSAGE_CLICKED, envelope_body(envelope),
                           now_us())
    await store.enqueue_delivery(delivery)
    return delivery



@asynccontextmanager
async def dispatching(
    store: Store, config: View, metrics: Metrics | None = None
) -> AsyncIterator[WebhookDispatcher]:
    dispatcher = WebhookDispatcher(lambda: config, store, metrics or Metrics())
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def has_status(store: Store, delivery_id: str, wanted: str) -> bool:
    record = await store.get_delivery(delivery_id)
    assert record is not None
    return record.status == wanted


async def test_delivery_is_signed_as_the_lettermint_sdk_expects(
    store: Store, receiver: Receiver
) -> None:
    delivery = await enqueue(store, "hook")
    async with dispatching(store, view(receiver, "hook")):
        await wait_until(lambda: has_status(store, delivery.id, "delivered"))
    [got] = receiver.to("hook")
    payload = verified(got, SECRET)
    assert payload["id"] == delivery.id and payload["event"] == "message.clicked"
    assert got.body == delivery.body.encode()
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"].startswith("clickrelay/")
    assert got.headers["X-Lettermint-Event"] == "message.clicked"
    assert got.headers["X-Lettermint-Attempt"] == "1"
    t = got.headers["X-Lettermint-Delivery"]
    assert got.headers["X-Lettermint-Signature"] == signature(SECRET, int(t), got.body)
    # Unicode and slashes unescaped, as Lettermint's own bodies.
    assert "Grüße — 你好".encode() in got.body and b"https://example.com/a/b" in got.body
    assert b"\\u" not in got.body and b"\\/" not in got.body
    [attempt] = await store.webhook_attempts(delivery.id)
    assert (attempt.attempt, attempt.status_code, attempt.error) == (1, 200, None)


async def test_a_failing_receiver_is_retried_with_the_same_id_and_every_attempt_recorded(
    store: Store, receiver: Receiver
) -> None:
    receiver.status = 500
    delivery = await enqueue(store, "hook")
    metrics = Metrics()
    async with dispatching(store, view(receiver, "hook"), metrics):
        await wait_until(lambda: len(receiver.to("hook")) >= 3)
        receiver.status = 204
        await wait_until(lambda: has_status(store, delivery.id, "delivered"))
    got = receiver.to("hook")
    assert {r.body for r in got} == {delivery.body.encode()}
    assert {verified(r, SECRET)["id"] for r in got} == {delivery.id}
    assert [r.headers["X-Lettermint-Attempt"] for r in got] == [
        str(n) for n in range(1, len(got) + 1)]
    attempts = await store.webhook_attempts(delivery.id)
    assert [a.attempt for a in attempts] == list(range(1, len(got) + 1))
    assert all(a.status_code == 500 and a.error == "HTTP 500: boom" for a in attempts[:-1])
    assert (attempts[-1].status_code, attempts[-1].error) == (204, None)
    assert all(a.duration_ms >= 0 for a in attempts)
    record = await store.get_delivery(delivery.id)
    assert record is not None and record.attempts == len(got) and record.finished_at
    assert metrics.webhook_attempts.labels("retry")._value.get() == len(got) - 1
    assert metrics.webhook_attempts.labels("delivered")._value.get() == 1


async def test_no_answer_within_the_timeout_is_a_failed_attempt(
    store: Store, receiver: Receiver
) -> None:
    hold = receiver.hold("hook")
    delivery = await enqueue(store, "hook")
    config = view(receiver, "hook", delivery=replace(FAST, timeout_seconds=0.2))
    async with dispatching(store, config):
        attempts = await wait_until(lambda: store.webhook_attempts(delivery.id))
        hold.set()
        await wait_until(lambda: has_status(store, delivery.id, "delivered"))
    assert attempts[0].status_code is None
    assert attempts[0].error == "no answer within 0.2 s"


async def test_a_slow_webhook_does_not_hold_up_the_others(
    store: Store, receiver: Receiver
) -> None:
    hold = receiver.hold("slow")
    slow = [await enqueue(store, "slow") for _ in range(12)]
    fast = [await enqueue(store, "fast") for _ in range(12)]
    config = view(receiver, "slow", "fast",
                  delivery=replace(FAST, concurrency=6, per_webhook_concurrency=3))
    async with dispatching(store, config):
        for d in fast:
            await wait_until(lambda d=d: has_status(store, d.id, "delivered"))
        # Every fast delivery went through while the slow receiver held its three slots.
        assert len(receiver.to("slow")) == 3
        assert not hold.is_set()
        hold.set()
        for d in slow:
            await wait_until(lambda d=d: has_status(store, d.id, "delivered"))


async def test_delivery_fails_for_good_once_the_retry_window_has_passed(
    store: Store, receiver: Receiver
) -> None:
    receiver.status = 503
    delivery = await enqueue(store, "hook")
    metrics = Metrics()
    config = view(receiver, "hook", delivery=replace(FAST, max_retry_hours=0.1 / 3600))
    async with dispatching(store, config, metrics):
        await wait_until(lambda: has_status(store, delivery.id, "failed"))
    record = await store.get_delivery(delivery.id)
    attempts = await store.webhook_attempts(delivery.id)
    assert record is not None and record.last_error == "HTTP 503: boom"
    assert record.attempts == len(attempts) == len(receiver.to("hook"))
    # Given up only once the window (0.1 s) had passed when the last attempt ended.
    last = attempts[-1]
    assert last.at + (last.duration_ms + 1) * 1000 - record.created_at >= 100_000
    assert metrics.webhook_failures._value.get() == 1


async def test_a_delivery_to_a_removed_webhook_fails_without_an_attempt(
    store: Store, receiver: Receiver
) -> None:
    delivery = await enqueue(store, "gone")
    async with dispatching(store, view(receiver, "hook")):
        await wait_until(lambda: has_status(store, delivery.id, "failed"))
    record = await store.get_delivery(delivery.id)
    assert record is not None and record.last_error == GONE
    assert await store.webhook_attempts(delivery.id) == []
    assert receiver.requests == []


async def test_stopping_mid_attempt_records_it_and_keeps_the_delivery(
    store: Store, receiver: Receiver
) -> None:
    hold = receiver.hold("hook")
    delivery = await enqueue(store, "hook")
    async with dispatching(store, view(receiver, "hook")):
        await wait_until(lambda: receiver.to("hook"))
    [attempt] = await store.webhook_attempts(delivery.id)
    assert attempt.error == "interrupted: clickrelay stopped during the attempt"
    record = await store.get_delivery(delivery.id)
    assert record is not None and record.status == "pending" and record.attempts == 1
    hold.set()
    async with dispatching(store, view(receiver, "hook")):
        await wait_until(lambda: has_status(store, delivery.id, "delivered"))
    again = receiver.to("hook")[-1]
    assert again.headers["X-Lettermint-Attempt"] == "2"
    assert verified(again, SECRET)["id"] == delivery.id


async def test_a_stop_while_an_attempt_is_being_recorded_waits_for_the_record(
    store: Store, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.status = 500
    delivery = await enqueue(store, "hook")
    gate, recording = asyncio.Event(), asyncio.Event()
    original = store.record_webhook_attempt

    async def slow_store(*args: Any, **kwargs: Any) -> None:
        recording.set()
        await gate.wait()
        await original(*args, **kwargs)

    monkeypatch.setattr(store, "record_webhook_attempt", slow_store)
    dispatcher = WebhookDispatcher(lambda: view(receiver, "hook"), store, Metrics())
    task = asyncio.create_task(dispatcher.run())
    await wait_until(recording.is_set)
    task.cancel()
    gate.set()
    await asyncio.gather(task, return_exceptions=True)
    [attempt] = await store.webhook_attempts(delivery.id)
    assert (attempt.status_code, attempt.error) == (500, "HTTP 500: boom")


async def test_a_claim_takes_no_more_than_each_webhook_has_room_for(
    store: Store,
) -> None:
    for i in range(30):
        await enqueue(store, f"hook{i % 3}")
    rooms = [WebhookRoom("acme", "hook0", 2), WebhookRoom("acme", "hook1", 3),
             WebhookRoom("acme", "hook2", 0)]
    claimed = await store.claim_due_deliveries("a", now_us(), 60_000_000, 100, rooms)
    assert sorted(d.webhook_id for d in claimed) == ["hook0"] * 2 + ["hook1"] * 3
    claimed = await store.claim_due_deliveries("a", now_us(), 60_000_000, 4, rooms)
    assert len(claimed) == 4  # the overall limit


async def test_two_dispatchers_on_one_database_never_claim_the_same_delivery(
    store: Store, tmp_path: Path
) -> None:
    ids = {(await enqueue(store, f"hook{i % 3}")).id for i in range(60)}
    rooms = [WebhookRoom("acme", f"hook{i}", 2) for i in range(3)]
    other = await Store.open(tmp_path / "data" / "clickrelay.db")
    claimed: list[str] = []
    try:
        while True:
            now = now_us()
            a, b = await asyncio.gather(
                store.claim_due_deliveries("a", now, 60_000_000, 4, rooms),
                other.claim_due_deliveries("b", now, 60_000_000, 4, rooms),
            )
            if not a + b:
                break
            claimed += [d.id for d in a + b]
    finally:
        await other.close()
    assert len(claimed) == len(set(claimed)) == 60 and set(claimed) == ids


def test_backoff_doubles_with_jitter_up_to_an_hour() -> None:
    rng = random.Random(7)
    for attempt in range(1, 40):
        delay = backoff_seconds(attempt, 10.0, MAX_BACKOFF_SECONDS, rng)
        base = min(MAX_BACKOFF_SECONDS, 10.0 * 2 ** (attempt - 1))
        assert 0.8 * base <= delay <= 1.2 * base


def test_default_schedule_retries_for_at_least_a_day() -> None:
    rng = random.Random(1)
    elapsed, attempts = 0.0, 1
    while elapsed < 24 * 3600:  # the dispatcher's rule: retry while younger than the window
        elapsed += backoff_seconds(attempts, 10.0, MAX_BACKOFF_SECONDS, rng)
        attempts += 1
    assert elapsed >= 24 * 3600 and 25 <= attempts <= 45


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"timeout_seconds": 0}, "webhook_delivery.timeout_seconds: must be positive"),
        ({"max_retry_hours": -1}, "webhook_delivery.max_retry_hours: must be positive"),
        ({"concurrency": 2, "per_webhook_concurrency": 3},
         "webhook_delivery.per_webhook_concurrency: must not exceed concurrency"),
        ({"retries": 3}, "webhook_delivery.retries: unknown key"),
    ],
)
def test_webhook_delivery_settings_are_checked(
    tmp_path: Path, table: dict[str, object], message: str
) -> None:
    from relay.config.load import ConfigError

    settings = base_settings(tmp_path, 2525)
    settings["webhook_delivery"] = table
    with pytest.raises(ConfigError, match=message):
        write_config(tmp_path / "c.toml", settings)


async def test_a_shared_store_sweep_keeps_deliveries_of_a_webhook_noted_after_its_file(
    store: Store,
) -> None:
    """A webhook another node noted after this node read its file is in that node's newer
    file: its deliveries are kept. One noted before, and gone from this node's file, was
    removed: its deliveries end."""
    added, removed = await enqueue(store, "added"), await enqueue(store, "removed")
    await store.note_config_items([ConfigItem("webhook", "acme/removed", "f1")], 1_000)
    await store.note_config_items([ConfigItem("webhook", "acme/added", "f2")], 3_000)
    assert await store.fail_other_deliveries([], now_us(), GONE, noted_after=2_000) == 1
    assert await has_status(store, removed.id, "failed")
    assert await has_status(store, added.id, "pending")
