"""Opens from the pixel to the webhook (docs/opens.md, docs/webhooks.md): an Apple MPP
prefetch and then the person's own open of the same copy, promoted to open events
(machine privacy proxy, then a genuine first open) and sent as ``message.opened`` with
Lettermint's data, signed as the SDK's ``Webhook.verify`` expects; machine opens only to
a webhook that includes machine events; clicks and opens each keep their own ``first_*``."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from relay.server import Running, running
from store.events import EventRecord
from tests.api_helpers import Clients, call
from tests.api_helpers import email as api_email
from tests.clicking import (
    CHROME,
    HOOK_SECRET,
    PERSON_ADDRESS,
    click_as_person,
    delivered,
    events_of,
)
from tests.conftest import finished, send, simple_message, write_config
from tests.receiver import Receiver, verified
from tests.redirecting import K1, click, links_in, open_token
from tests.sink import Sink
from tracker.tokens import TokenVerifier
from tracker.webhooks.events import OPEN_LINK_INDEX, iso_timestamp

pytestmark = pytest.mark.usefixtures("both_stores")

PIXEL_PATH = re.compile(rb'src="http://(pacme1\.t\.localhost:8080)(/o/[A-Za-z0-9_.-]+)"')
APPLE_MAIL = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko)")
MPP_ADDRESS = "17.58.63.12"  # Apple's network: the shipped apple_mpp label


def configure(settings: dict[str, Any], receiver: Receiver) -> None:
    settings["projects"][0]["routes"][0]["track_opens"] = True
    events = ["message.clicked", "message.opened"]
    settings["projects"][0]["webhooks"] = [
        {"id": name, "url": receiver.url(name), "secret": HOOK_SECRET, "events": events,
         "include_machine_events": machine}
        for name, machine in (("people", False), ("everything", True))
    ] + [{"id": "clicks-only", "url": receiver.url("clicks-only"), "secret": HOOK_SECRET,
          "events": ["message.clicked"], "include_machine_events": True}]
    settings["webhook_delivery"] = {"retry_initial_seconds": 0.01}


async def open_pixel(relay: Running, host: str, path: str, agent: str, address: str) -> None:
    answer = await click(relay, path, host=host,
                         headers={"User-Agent": agent, "X-Forwarded-For": address,
                                  "Accept": "image/webp,image/png,image/*;q=0.8",
                                  "Accept-Language": "en-GB,en;q=0.9",
                                  # what a browser sends for an image (MDN Sec-Fetch-Dest)
                                  "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors",
                                  "Sec-Fetch-Dest": "image"})
    assert answer.status == 200


async def opens_of(relay: Running, message_id: str, count: int) -> list[EventRecord]:
    events = await events_of(relay, message_id, count)
    return [e for e in events if e.opened]


async def test_an_mpp_prefetch_then_the_persons_open_reach_the_webhooks(
    settings: dict[str, Any], config_path: Path, sink: Sink, receiver: Receiver
) -> None:
    configure(settings, receiver)
    async with running(write_config(config_path, settings)) as relay:
        _, host, path, message_id = await delivered_copy(
            relay, sink, simple_message(headers="X-LM-Tag: news\r\n"))
        await open_pixel(relay, host, path, "Mozilla/5.0", MPP_ADDRESS)
        await opens_of(relay, message_id, 1)  # promoted before the person opens
        await open_pixel(relay, host, path, APPLE_MAIL, PERSON_ADDRESS)
        mpp, person = await opens_of(relay, message_id, 2)
        for event in (mpp, person):
            await delivered(relay, event)
    assert (mpp.classification, mpp.proxy_type, mpp.machine, mpp.first_click) == (
        "privacy_proxy", "apple_mpp", True, True)
    assert (person.classification, person.machine, person.counts_for_metrics) == (
        "genuine", False, True)
    assert person.first_click is True  # a genuine first open, whatever MPP fetched before
    assert person.link_index == OPEN_LINK_INDEX and person.destination == ""
    [got] = receiver.to("people")
    payload = verified(got, HOOK_SECRET)
    assert payload["event"] == "message.opened" and got.headers["X-Lettermint-Event"] == (
        "message.opened")
    data = payload["data"]
    assert list(data) == ["message_id", "subject", "metadata", "tag", "recipient", "opened_at",
                          "first_open", "device_type", "client_type", "client_name",
                          "user_agent", "bot"]
    assert (data["message_id"], data["subject"], data["tag"], data["recipient"]) == (
        message_id, "Hello", "news", "rcpt@example.org")
    assert data["opened_at"] == iso_timestamp(person.clicked_at)
    assert data["first_open"] is True and data["user_agent"] == APPLE_MAIL
    assert data["client_type"] == "email_client" and data["device_type"] == "desktop"
    assert data["bot"] == {"detected": False, "probability": person.probability,
                           "classification": "genuine", "proxy_type": None,
                           "reason_codes": list(person.reason_codes), "machine": False,
                           "counts_for_metrics": True}
    assert set(person.rules) <= {"early_open"}  # opened seconds after delivery in the test
    everything = [verified(r, HOOK_SECRET) for r in receiver.to("everything")]
    assert [p["data"]["bot"]["proxy_type"] for p in everything] == ["apple_mpp", None]
    assert [p["data"]["first_open"] for p in everything] == [True, True]
    assert receiver.to("clicks-only") == []


async def test_clicks_and_opens_keep_their_own_first(
    settings: dict[str, Any], config_path: Path, sink: Sink, receiver: Receiver
) -> None:
    configure(settings, receiver)
    async with running(write_config(config_path, settings)) as relay:
        content, host, path, message_id = await delivered_copy(relay, sink, simple_message())
        await open_pixel(relay, host, path, CHROME, PERSON_ADDRESS)
        await events_of(relay, message_id, 1)
        await click_as_person(relay, links_in(content)[0])
        events = await events_of(relay, message_id, 2)
        await open_pixel(relay, host, path, CHROME, PERSON_ADDRESS)
        events = await events_of(relay, message_id, 3)
    assert [(e.opened, e.first_click) for e in events] == [
        (True, True), (False, True), (True, False)]
    assert {e.classification for e in events} == {"genuine"}


async def test_an_open_before_delivery_is_machine(
    settings: dict[str, Any], config_path: Path, sink: Sink, receiver: Receiver
) -> None:
    configure(settings, receiver)
    sink.fail("MAIL", "451 4.3.0 try again later", times=10**4)  # the copy stays queued
    async with running(write_config(config_path, settings)) as relay:
        clients = Clients(relay)
        try:
            answer = await call(clients().emails.send, api_email())
        finally:
            clients.close()
        message_id = answer["message_id"]
        token = open_token(message_id=message_id, expires=int(time.time()) + 3600)
        await open_pixel(relay, "pacme1.t.localhost:8080", f"/o/{token}", CHROME,
                         PERSON_ADDRESS)
        [event] = await opens_of(relay, message_id, 1)
        message = await relay.store.get_message(message_id)
        assert message is not None and message.status == "queued"
    assert event.machine and "open_before_delivery" in event.rules
    assert receiver.to("people") == [] and len(receiver.to("everything")) <= 1


async def delivered_copy(relay: Running, sink: Sink, raw: bytes
                         ) -> tuple[bytes, str, str, str]:
    """Send one mail; its delivered copy, the pixel's host and path, and its message id."""
    before = len(sink.received)
    await send(relay.smtp_port, raw)
    content = (await sink.wait_for(before + 1))[before].content
    match = PIXEL_PATH.search(content)
    assert match is not None
    host, path = match[1].decode(), match[2].decode()
    message_id = TokenVerifier([K1]).verify_open(path[3:]).message_id
    await finished(relay, message_id)
    return content, host, path, message_id


async def test_opens_in_message_events_and_stats_with_the_sdks_names(
    settings: dict[str, Any], config_path: Path, sink: Sink, receiver: Receiver
) -> None:
    configure(settings, receiver)
    settings["projects"][0]["webhooks"] = []
    async with running(write_config(config_path, settings)) as relay:
        clients = Clients(relay)
        try:
            content, host, path, mpp_only = await delivered_copy(relay, sink, simple_message())
            await open_pixel(relay, host, path, "Mozilla/5.0", MPP_ADDRESS)
            await events_of(relay, mpp_only, 1)
            content, host, path, read = await delivered_copy(relay, sink, simple_message())
            await open_pixel(relay, host, path, "Mozilla/5.0", MPP_ADDRESS)
            await open_pixel(relay, host, path, APPLE_MAIL, PERSON_ADDRESS)
            await events_of(relay, read, 2)
            content, _, _, clicked = await delivered_copy(relay, sink, simple_message())
            await click_as_person(relay, links_in(content)[0])  # an implied open
            await events_of(relay, clicked, 1)
            day = time.strftime("%Y-%m-%d", time.gmtime())
            people = await call(clients().stats.retrieve, {"from": day, "to": day})
            everything = await call(clients().stats.retrieve,
                                    {"from": day, "to": day, "include_machine": "true"})
            human_events = await call(lambda: list(clients().messages.iterate_events(read, {})))
            all_events = await call(lambda: list(clients().messages.iterate_events(
                read, {"include_machine_events": "true"})))
        finally:
            clients.close()
    totals = people["totals"]
    assert (totals["opened"], totals["observed_opened"], totals["human_opened"],
            totals["privacy_opened"], totals["effective_opened"]) == (2, 2, 2, 0, 2)
    assert totals["machine_opened"] is None and everything["totals"]["machine_opened"] == 2
    assert totals["open_tracked_delivered"] == 3 and totals["human_open_rate"] == 0.6667
    assert totals["clicked"] == 1  # the opens are not clicks
    assert totals["opened_events"] == 1 and totals["machine_opened_events"] is None
    assert everything["totals"]["machine_opened_events"] == 2
    assert people["daily"][0]["human_opened"] == 2
    opened = [e for e in human_events if e["event"] == "opened"]
    assert len(opened) == 1 and opened[0]["metadata"]["first_open"] is True
    assert opened[0]["metadata"]["bot"]["classification"] == "genuine"
    machine = [e for e in all_events if e["event"] == "opened"]
    assert [e["metadata"]["bot"]["proxy_type"] for e in machine] == ["apple_mpp", None]
