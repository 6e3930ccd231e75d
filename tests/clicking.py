"""Helpers for the click-to-webhook tests: mail through the running relay, the tracked links
of the delivered copy, clicks over HTTP as a browser or a scanner would make them (from a
public address, through the trusted proxy on 127.0.0.1), and waiting for their events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay.server import Running
from store.events import EventRecord
from store.webhooks import DeliveryRecord
from tests.conftest import send, simple_message, wait_until
from tests.redirecting import K1, Answer, click, links_in
from tests.sink import Sink
from tracker.tokens import verify_token

HOOK_SECRET = "whsec_test_hook_secret_0123456789"
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
BROWSER_HEADERS = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "de-DE,de;q=0.9,en;q=0.8",
    "Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document",
    "Sec-Fetch-User": "?1",
}
# Gateways that follow links wear a browser's agent string too, but not the recipient's.
GATEWAY_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                 "Chrome/118.0.0.0 Safari/537.36 Edg/118.0.2088.46")
PERSON_ADDRESS = "198.51.100.23"
SAFE_LINKS_ADDRESS = "40.107.22.14"  # Microsoft Exchange Online Protection


def with_webhooks(settings: dict[str, Any], receiver_url: Any, **hooks: bool) -> None:
    """Give the test project webhooks named after their keyword, each true when it takes
    machine clicks too; retries start after a hundredth of a second."""
    settings["projects"][0]["webhooks"] = [
        {"id": name, "url": receiver_url(name), "secret": HOOK_SECRET,
         "events": ["message.clicked"], "include_machine_events": machine}
        for name, machine in hooks.items()
    ]
    settings["webhook_delivery"] = {"retry_initial_seconds": 0.01}


@dataclass(frozen=True)
class Sent:
    message_id: str
    links: list[str]  # tracking links in document order (the honeypot's too, if any)

    def link(self, index: int) -> str:
        return next(lk for lk in self.links if link_index(lk) == index)


def link_index(link: str) -> int:
    return verify_token(link.rsplit("/c/", 1)[1], [K1]).link_index


async def send_tracked(relay: Running, sink: Sink, html: str, *, headers: str = "",
                       subject: str = "Hello", rcpts: list[str] | None = None) -> list[Sent]:
    """Send one mail through the relay; each recipient's delivered copy and its links."""
    before = len(sink.handler.received)
    await send(relay.smtp_port, simple_message(html, headers, subject), rcpts=rcpts)
    received = (await sink.wait_for(before + len(rcpts or [1])))[before:]
    out = []
    for copy in received:
        links = links_in(copy.content)
        token = links[0].rsplit("/c/", 1)[1]
        out.append(Sent(verify_token(token, [K1]).message_id, links))
    return out


async def click_as_person(relay: Running, link: str, **extra: str) -> Answer:
    headers = {"User-Agent": CHROME, "X-Forwarded-For": PERSON_ADDRESS, **BROWSER_HEADERS,
               **extra}
    return await click(relay, link, headers=headers)


async def probe_as_scanner(relay: Running, link: str) -> Answer:
    """What a link-protection gateway does: a HEAD from its own network."""
    return await click(relay, link, method="HEAD",
                       headers={"User-Agent": GATEWAY_AGENT,
                                "X-Forwarded-For": SAFE_LINKS_ADDRESS})


async def events_of(relay: Running, message_id: str, count: int) -> list[EventRecord]:
    """Wait for ``count`` events of the message, machine clicks included."""

    async def enough() -> list[EventRecord] | None:
        events = await relay.store.list_message_events(message_id, include_machine=True)
        return events if len(events) >= count else None

    events: list[EventRecord] = await wait_until(enough)
    return events


async def delivered(relay: Running, event: EventRecord) -> list[DeliveryRecord]:
    """Wait until every delivery of the event is delivered; its deliveries (written with
    the event, so an empty list is final)."""

    async def done() -> tuple[list[DeliveryRecord]] | None:
        records = await relay.store.deliveries_of_event(event.id)
        return (records,) if all(r.status == "delivered" for r in records) else None

    (records,) = await wait_until(done)
    return list(records)

