"""People in a hurry over HTTP (docs/classification.md, "People in a hurry"): a reader who
opens the four links of a newsletter in new tabs within two seconds, from a home address
with a current browser's user-activated navigations, gets four genuine clicks and their
webhooks; the same burst from a gateway (its agent, its network, no user activation) stays
machine."""

from __future__ import annotations

from typing import Any

import pytest

from relay.server import Running
from tests.clicking import (
    GATEWAY_AGENT,
    HOOK_SECRET,
    SAFE_LINKS_ADDRESS,
    click_as_person,
    delivered,
    events_of,
    send_tracked,
    with_webhooks,
)
from tests.receiver import Receiver, verified
from tests.redirecting import click
from tests.sink import Sink

pytestmark = pytest.mark.usefixtures("both_stores")

FOUR_LINKS = "".join(f'<p><a href="https://example.com/{n}">Story {n}</a></p>' for n in range(4))


@pytest.fixture
def settings(settings: dict[str, Any], receiver: Receiver) -> dict[str, Any]:
    with_webhooks(settings, receiver.url, people=False, everything=True)
    return settings


async def test_four_links_in_new_tabs_within_two_seconds_are_a_persons(
    relay: Running, sink: Sink, receiver: Receiver
) -> None:
    [sent] = await send_tracked(relay, sink, FOUR_LINKS)
    for index in range(4):  # back to back: well within two seconds
        assert (await click_as_person(relay, sent.link(index))).status == 302
    events = await events_of(relay, sent.message_id, 4)
    assert [e.classification for e in events] == ["genuine"] * 4
    assert all(e.counts_for_metrics and not e.machine for e in events)
    assert [e.first_click for e in events] == [True, False, False, False]
    # The later clicks saw the burst, and the evidence of a person outweighed it.
    assert any({"burst", "person_in_a_hurry"} <= set(e.rules) for e in events)
    for event in events:
        await delivered(relay, event)
    assert len([verified(r, HOOK_SECRET) for r in receiver.to("people")]) == 4


async def test_the_same_burst_from_a_gateway_stays_machine(
    relay: Running, sink: Sink, receiver: Receiver
) -> None:
    [sent] = await send_tracked(relay, sink, FOUR_LINKS)
    gateway = {"User-Agent": GATEWAY_AGENT, "X-Forwarded-For": SAFE_LINKS_ADDRESS,
               "Accept": "text/html", "Accept-Language": "en-US"}
    for index in range(4):
        assert (await click(relay, sent.link(index), headers=gateway)).status == 302
    events = await events_of(relay, sent.message_id, 4)
    assert all(e.machine and e.classification == "security_scanner" for e in events)
    assert not any("person_in_a_hurry" in e.rules for e in events)
    for event in events:
        await delivered(relay, event)
    assert receiver.to("people") == []
