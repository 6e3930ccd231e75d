"""Webhooks end to end (docs/webhooks.md): a click on a relayed mail reaches the receiver as
Lettermint sends it, across restarts and failures, machine clicks only where asked."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relay.server import Running, running
from tests.clicking import (
    CHROME,
    GATEWAY_AGENT,
    HOOK_SECRET,
    SAFE_LINKS_ADDRESS,
    click_as_person,
    delivered,
    events_of,
    probe_as_scanner,
    send_tracked,
    with_webhooks,
)
from tests.conftest import base_settings, wait_until, write_config
from tests.receiver import Receiver, verified
from tests.redirecting import click
from tests.sink import Sink
from tracker.config import WebhookDeliveryConfig
from tracker.webhooks.events import (
    iso_timestamp,
)

# Each test on a SQLite file, then on a PostgreSQL schema of its own.
pytestmark = pytest.mark.usefixtures("both_stores")


def test_webhook_delivery_settings_load(tmp_path: Path) -> None:
    settings = base_settings(tmp_path, 2525)
    assert write_config(tmp_path / "a.toml", settings).webhook_delivery == WebhookDeliveryConfig()
    settings["webhook_delivery"] = {"max_retry_hours": 48, "retry_initial_seconds": 0.5,
                                    "concurrency": 2, "per_webhook_concurrency": 1,
                                    "timeout_seconds": 3}
    loaded = write_config(tmp_path / "b.toml", settings).webhook_delivery
    assert loaded == WebhookDeliveryConfig(48.0, 0.5, 2, 1, 3.0)


# -- clicks through the running relay ------------------------------------------------------

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
TWO_LINKS = ('<html><body><p><a href="https://example.com/a">First</a> '
             '<a href="https://example.com/b?x=1&amp;y=2">  Öffnen\n  bitte </a></p></body></html>')
MAIL_HEADERS = "X-LM-Tag: receipts\r\nX-LM-Metadata-Order: 1042\r\n"


@pytest.fixture
async def hooked(
    settings: dict[str, Any], config_path: Path, receiver: Receiver
) -> AsyncIterator[Running]:
    """The relay with two webhooks: "people" (clicks people made) and "everything"."""
    with_webhooks(settings, receiver.url, people=False, everything=True)
    async with running(write_config(config_path, settings)) as relay:
        yield relay


async def test_a_click_reaches_the_webhook_as_lettermint_sends_it(
    hooked: Running, sink: Sink, receiver: Receiver
) -> None:
    [sent] = await send_tracked(hooked, sink, TWO_LINKS, headers=MAIL_HEADERS,
                                subject="Grüße")
    answer = await click_as_person(hooked, sent.link(1))
    assert answer.status == 302
    [event] = await events_of(hooked, sent.message_id, 1)
    await delivered(hooked, event)
    [got] = receiver.to("people")
    payload = verified(got, HOOK_SECRET)
    assert list(payload) == ["id", "event", "timestamp", "data"]
    assert payload["event"] == "message.clicked" and ISO_MS.fullmatch(payload["timestamp"])
    data = payload["data"]
    assert list(data) == [
        "message_id", "subject", "metadata", "tag", "recipient", "clicked_at",
        "destination_url", "link_index", "anchor_text", "first_click", "device_type",
        "client_type", "client_name", "user_agent", "bot"]
    assert data["message_id"] == sent.message_id
    assert (data["subject"], data["metadata"], data["tag"]) == (
        "Grüße", {"Order": "1042"}, "receipts")
    assert data["recipient"] == "rcpt@example.org"
    assert ISO_MS.fullmatch(data["clicked_at"])
    assert data["clicked_at"] == iso_timestamp(event.clicked_at)
    assert (data["destination_url"], data["link_index"], data["anchor_text"]) == (
        "https://example.com/b?x=1&y=2", 1, "Öffnen bitte")
    assert data["first_click"] is True
    assert (data["device_type"], data["client_type"], data["client_name"]) == (
        "desktop", "browser", "Chrome")
    assert data["user_agent"] == CHROME
    bot = data["bot"]
    assert list(bot) == ["detected", "probability", "classification", "proxy_type",
                         "reason_codes", "machine", "counts_for_metrics"]
    assert bot["classification"] == "genuine" and bot["proxy_type"] is None
    assert bot["detected"] is bot["machine"] is False and bot["counts_for_metrics"] is True
    assert bot["probability"] < 50
    assert "Grüße".encode() in got.body and b"https://example.com/b" in got.body
    # The same click went to the webhook that takes everything, with its own delivery id.
    [other] = receiver.to("everything")
    assert verified(other, HOOK_SECRET)["data"] == data
    assert verified(other, HOOK_SECRET)["id"] != payload["id"]


async def test_a_failing_receiver_gets_every_event_across_a_restart(
    settings: dict[str, Any], config_path: Path, sink: Sink, receiver: Receiver
) -> None:
    with_webhooks(settings, receiver.url, people=False)
    config = write_config(config_path, settings)
    receiver.status = 500
    async with running(config) as relay:
        [sent] = await send_tracked(relay, sink, TWO_LINKS)
        for index in (0, 1):
            await click_as_person(relay, sent.link(index))
        events = await events_of(relay, sent.message_id, 2)
        await wait_until(lambda: len({r.payload["id"] for r in receiver.to("people")}) == 2)
    receiver.status = 200
    async with running(config) as relay:
        records = [d for e in events for d in await delivered(relay, e)]
        assert await relay.store.list_message_events(sent.message_id) == events
        attempts = {r.id: await relay.store.webhook_attempts(r.id) for r in records}
    assert len(records) == 2
    for record in records:
        got = [r for r in receiver.to("people") if r.payload["id"] == record.id]
        assert {r.body for r in got} == {record.body.encode()}
        assert all(verified(r, HOOK_SECRET)["id"] == record.id for r in got)
        numbers = [a.attempt for a in attempts[record.id]]
        assert numbers == list(range(1, record.attempts + 1)) and record.attempts >= 2
        assert {int(r.headers["X-Lettermint-Attempt"]) for r in got} <= set(numbers)
        # Before the restart every attempt failed: a 500, or cut short by the stop.
        assert all(a.status_code in (500, None) and a.error for a in attempts[record.id][:-1])
        assert attempts[record.id][-1].status_code == 200


async def test_machine_clicks_reach_only_webhooks_that_include_them(
    hooked: Running, sink: Sink, receiver: Receiver
) -> None:
    [sent] = await send_tracked(hooked, sink, TWO_LINKS)
    assert (await probe_as_scanner(hooked, sent.link(0))).status == 302
    safe_links = {"User-Agent": GATEWAY_AGENT, "X-Forwarded-For": SAFE_LINKS_ADDRESS}
    assert (await click(hooked, sent.link(1), headers=safe_links)).status == 302
    await click_as_person(hooked, sent.link(1))
    probe, scan, person = await events_of(hooked, sent.message_id, 3)
    assert probe.machine and probe.classification == "security_scanner"
    assert scan.machine and "scanner_network:microsoft_eop" in scan.rules
    assert not person.machine
    for event, hooks in ((probe, {"everything"}), (scan, {"everything"}),
                         (person, {"people", "everything"})):
        assert {d.webhook_id for d in await delivered(hooked, event)} == hooks
    machine = [verified(r, HOOK_SECRET)["data"] for r in receiver.to("everything")]
    assert sorted(d["bot"]["machine"] for d in machine) == [False, True, True]
    [human] = [verified(r, HOOK_SECRET)["data"] for r in receiver.to("people")]
    assert human["bot"]["counts_for_metrics"] is True and human["link_index"] == 1
    # The person's click is the first one people made, though machines came before.
    assert human["first_click"] is True and probe.first_click and not scan.first_click


async def test_webhook_metrics_are_exported(
    hooked: Running, sink: Sink, receiver: Receiver
) -> None:
    [sent] = await send_tracked(hooked, sink, TWO_LINKS)
    await click_as_person(hooked, sent.link(0))
    [event] = await events_of(hooked, sent.message_id, 1)
    await delivered(hooked, event)
    registry = hooked.metrics.registry
    assert registry.get_sample_value(
        "clickrelay_clicks_classified_total", {"classification": "genuine"}) == 1
    assert registry.get_sample_value(
        "clickrelay_webhook_attempts_total", {"result": "delivered"}) == 2
    assert registry.get_sample_value("clickrelay_promotion_lag_seconds_count") == 1
