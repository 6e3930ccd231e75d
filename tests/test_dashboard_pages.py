"""The dashboard's pages over plain HTTP, as a browser without JavaScript uses them
(docs/dashboard.md): the message list searched and paged by its cursor, the activity
filters, webhooks' Send test, and the spool's Retry and Drop behind their confirmation;
hostile query strings get a clear 400, never a 500."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relay.dashboard import activity, mail
from relay.server import Running, running
from tests.clicking import PERSON_ADDRESS, click_as_person, events_of, send_tracked
from tests.conftest import finished, send, simple_message, wait_until, write_config
from tests.dashboard_helpers import Visitor, with_dashboard
from tests.receiver import Receiver
from tests.sink import Sink
from tests.test_opens_webhooks import APPLE_MAIL, MPP_ADDRESS, delivered_copy, open_pixel

# The tests where the store is the point also run on PostgreSQL (the rest, refusals that
# store nothing, on SQLite alone: the suite's time).
both_stores = pytest.mark.usefixtures("both_stores")

RESULT = re.compile(r'<a href="/messages/([0-9a-f-]+)">')


@pytest.fixture
async def relay(settings: dict[str, Any], config_path: Path, receiver: Receiver
                ) -> AsyncIterator[Running]:
    with_dashboard(settings, receiver.url("acme-hook"))
    async with running(write_config(config_path, settings)) as r:
        yield r


@pytest.fixture
async def visitor(relay: Running) -> AsyncIterator[Visitor]:
    async with Visitor(relay) as v:
        status, _, _ = await v.sign_in()
        assert status == 302
        yield v


@both_stores
async def test_messages_searched_and_paged_by_cursor(
    relay: Running, visitor: Visitor, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(5):
        tag = "X-LM-Tag: receipts\r\n" if n % 2 else ""
        subject = f"Order {n} " + ("50%_off" if n in (1, 2) else "50 off")
        await send(relay.smtp_port, simple_message(subject=subject, headers=tag),
                   rcpts=[f"r{n}@example.org"])
    await sink.wait_for(5)
    monkeypatch.setattr(mail, "PAGE_SIZE", 2)
    seen: list[str] = []
    path = "/projects/acme/messages"
    while True:
        status, _, page = await visitor.get(path)
        assert status == 200
        seen += re.findall(r"(r\d)@example.org", page)
        older = re.search(r'href="(\?search=&amp;before=[^"]+)" rel="next"', page)
        if not older:
            break
        path = "/projects/acme/messages" + older.group(1).replace("&amp;", "&")
    assert seen == ["r4", "r3", "r2", "r1", "r0"]
    for search, expected in (("r3@", ["r3"]), ("receipts", ["r3", "r1"]),
                             ("Order 2", ["r2"]), ("50%_", ["r2", "r1"]),
                             ("0%_o", ["r2", "r1"]), ("nothing", [])):
        status, _, page = await visitor.get("/projects/acme/messages",
                                            params={"search": search})
        assert re.findall(r"(r\d)@example.org", page) == expected, search


async def test_hostile_queries_get_a_clear_400(visitor: Visitor) -> None:
    for path, params, words in (
        ("/projects/acme/messages", {"before": "!!!"}, "before: not a cursor"),
        ("/projects/acme/messages", {"before": "MTI6"}, "before: not a cursor"),
        ("/projects/acme/messages", {"search": "x" * 201}, "at most 200"),
        ("/projects/acme/activity", {"period": "1y"}, "Period: one of"),
        ("/projects/acme/activity", {"route": "other-main"}, "not a route of acme"),
        ("/projects/acme/activity", {"tag": "t" * 201}, "Tag: at most"),
    ):
        status, _, page = await visitor.get(path, params=params)
        assert status == 400 and words in page, (path, params)
    for path in ("/projects/nope/messages", "/routes/nope", "/messages/nope",
                 "/spool/nope/retry", "/spool/nope/explode"):
        status, _, _ = await visitor.get(path)
        assert status == 404, path


@both_stores
async def test_activity_per_route_and_tag_with_machine_clicks_when_asked(
    relay: Running, visitor: Visitor, sink: Sink
) -> None:
    (sent,) = await send_tracked(relay, sink, '<p><a href="https://example.com/a">A</a></p>',
                                 headers="X-LM-Tag: spring\r\n")
    await click_as_person(relay, sent.links[0])
    await click_as_person(relay, sent.links[0], **{"User-Agent": "curl/8.5.0"})
    await events_of(relay, sent.message_id, 2)

    async def totals(**params: str) -> str:
        status, _, page = await visitor.get("/projects/acme/activity", params=params)
        assert status == 200
        found = re.search(r'<p class="totals">(.*?)</p>', page, re.S)
        assert found
        return re.sub(r"<[^>]+>", "", found.group(1))

    none = " · human opens 0"
    assert await totals() == "Human clicks 1 · unique human clicks 1" + none
    assert "machine clicks 1" in await totals(machine="1", period="24h")
    assert await totals(route="acme-outgoing", tag="spring") == (
        "Human clicks 1 · unique human clicks 1" + none)
    assert await totals(route="acme-news") == "Human clicks 0 · unique human clicks 0" + none
    assert await totals(tag="autumn") == "Human clicks 0 · unique human clicks 0" + none


@both_stores
async def test_send_test_queues_a_webhook_test_delivery(
    relay: Running, visitor: Visitor, receiver: Receiver
) -> None:
    status, response, _ = await visitor.submit("/projects/acme/webhooks",
                                               "/webhooks/acme-hook/test")
    assert status == 303 and response.headers["Location"].endswith("?queued=acme-hook")
    (received,) = await wait_until(lambda: receiver.to("acme-hook"))
    assert received.payload["event"] == "webhook.test"

    async def shown() -> bool:
        _, _, page = await visitor.get("/projects/acme/webhooks")
        return "webhook.test" in page and "success" in page

    await wait_until(shown)


@both_stores
async def test_spool_retry_and_drop_behind_a_confirmation(
    relay: Running, visitor: Visitor, sink: Sink
) -> None:
    sink.fail("MAIL", "451 4.3.0 try later", times=2)
    relay.config.replace(_slow_retries(relay))
    for n in range(2):
        await send(relay.smtp_port, simple_message(subject=f"Stuck {n}"))

    async def both_deferred() -> list[str] | None:
        queued = await relay.store.spool_copies("queued", 10)
        return [m.id for m in queued] if sum(m.attempts for m in queued) == 2 else None

    retry_id, drop_id = await wait_until(both_deferred)
    status, _, page = await visitor.get("/spool")
    assert "451 4.3.0 try later" in page and f"/spool/{drop_id}/drop" in page
    status, _, page = await visitor.get(f"/spool/{drop_id}/drop")
    assert status == 200 and "Drop this copy?" in page
    assert (await relay.store.get_message(drop_id)).status == "queued"  # asked, not done
    status, response, _ = await visitor.submit(f"/spool/{drop_id}/drop",
                                               f"/spool/{drop_id}/drop")
    assert status == 303
    dropped = await relay.store.get_message(drop_id)
    assert (dropped.status, dropped.last_error) == ("failed", "dropped by the operator")
    status, response, _ = await visitor.submit(f"/spool/{retry_id}/retry",
                                               f"/spool/{retry_id}/retry")
    assert status == 303 and "will+be+retried+now" in response.headers["Location"]
    assert (await finished(relay, retry_id)).status == "delivered"
    status, _, page = await visitor.get("/spool")
    assert "Nothing is queued." in page and "dropped by the operator" in page


def _slow_retries(relay: Running) -> Any:
    """The running configuration with retries an hour apart: a deferred copy stays queued."""
    config = relay.config()
    upstream = dataclasses.replace(config.upstream, retry_initial_seconds=3600.0)
    return dataclasses.replace(config, upstream=upstream)


async def test_refresh_every_30_s_reloads_the_page_without_script(visitor: Visitor) -> None:
    status, _, page = await visitor.get("/projects/acme/activity")
    assert status == 200 and 'http-equiv="refresh"' not in page
    assert '<label for="live">Refresh every 30 s</label>' in page
    status, _, page = await visitor.get("/projects/acme/activity", params={"live": "1"})
    assert '<meta http-equiv="refresh" content="30">' in page


@both_stores
async def test_opens_are_shown_apart_from_clicks_on_the_message_page_and_the_chart(
    relay: Running, visitor: Visitor, sink: Sink
) -> None:
    """An Apple Mail Privacy Protection fetch of the pixel is hidden until machine activity
    is asked for; the person's own open is shown, counted, as the first open."""
    raw = simple_message(headers="X-LM-Override-Track-Opens: true\r\n")
    _, host, path, message_id = await delivered_copy(relay, sink, raw)
    await open_pixel(relay, host, path, "Mozilla/5.0", MPP_ADDRESS)
    await events_of(relay, message_id, 1)
    await open_pixel(relay, host, path, APPLE_MAIL, PERSON_ADDRESS)
    await events_of(relay, message_id, 2)
    status, _, page = await visitor.get(f"/messages/{message_id}")
    assert status == 200
    opens = page.split("<h2>Opens</h2>", 1)[1]
    assert "Counted as a human open." in opens and "first_open" in opens
    assert "apple_mpp" not in opens
    assert "No human click yet." in page.split("<h2>Opens</h2>", 1)[0]
    status, _, page = await visitor.get(f"/messages/{message_id}?machine=1")
    opens = page.split("<h2>Opens</h2>", 1)[1]
    assert "apple_mpp" in opens and "a machine open, not counted" in opens
    status, _, page = await visitor.get("/projects/acme/activity?period=24h")
    assert status == 200
    assert "Human clicks <strong>0</strong>" in page  # an open is no click
    assert "human opens <strong>1</strong>" in page  # the person's; not Apple's fetch


@both_stores
async def test_settled_days_are_counted_ahead_of_the_first_view(relay: Running) -> None:
    """The dashboard-activity task keeps each project's settled days at start, so that the
    first view of a 90-day chart reads them instead of counting every click."""

    async def kept() -> Any:
        rows = await relay.store.db.fetchall(
            "SELECT COUNT(*) FROM dashboard_activity WHERE project_id = 'acme'"
            " AND route_id = '' AND tag = '' AND bucket_us = ?", (activity.DAY_US,))
        # Every settled day of the 90 that retention keeps: not today, not one retention
        # may be purging.
        return rows[0][0] >= min(89, int(relay.config().retention.days) - 1)

    await wait_until(kept)
    assert relay.supervisor.report().tasks["dashboard-activity"] == "running"
