"""The dashboard in a real browser (tests/browser.py): signing in with a password and with
the team token, a wrong password, Track Clicks switched and saved and then obeyed by the
next mail over SMTP, the configuration file's comments kept, an inbound route that cannot be
switched, a click on its message's page with its classification, a scanner's click hidden
until "Include machine activity", a form without its CSRF token refused, and Sign out."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from playwright.async_api import Page, expect

from relay.config.load import load_config
from relay.server import Running, running
from tests.api_helpers import TRACKED, read_text, write_text
from tests.browser import base, browser, page, sign_in
from tests.clicking import click_as_person, events_of, probe_as_scanner, send_tracked
from tests.conftest import TEAM_TOKEN, send, simple_message
from tests.dashboard_helpers import ADMIN, PASSWORD, with_dashboard
from tests.screenshots import PAGES, take
from tests.sink import Sink

__all__ = ["browser", "page"]  # the fixtures, used by name

COMMENT = "# written by hand: this comment must survive a Save\n"
NEWS_ROUTE = "X-Lettermint-Route: news\r\n"


@pytest.fixture
async def relay(settings: dict[str, Any], config_path: Path) -> AsyncIterator[Running]:
    await write_text(config_path, COMMENT + tomlkit.dumps(with_dashboard(settings)))
    async with running(load_config(config_path)) as r:
        yield r


async def test_sign_in_with_a_password(page: Page, relay: Running) -> None:
    await sign_in(page, relay)
    await expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    await expect(page.get_by_role("link", name="acme", exact=True)).to_be_visible()
    await expect(page.get_by_text(ADMIN, exact=True)).to_be_visible()


async def test_sign_in_with_the_team_token(page: Page, relay: Running) -> None:
    await sign_in(page, relay, token=TEAM_TOKEN)
    await expect(page.get_by_role("heading", name="Projects")).to_be_visible()


async def test_sign_in_and_switch_with_the_keyboard_alone(page: Page, relay: Running) -> None:
    await page.goto(base(relay) + "/routes/acme-news")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.get_by_label("Name").focus()
    await page.keyboard.type(ADMIN)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    switch = page.get_by_label("Track Clicks")
    await switch.focus()
    await page.keyboard.press("Space")
    await expect(switch).to_be_checked()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Save")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_contain_text("Saved")
    assert relay.config().find_route("acme-news")[1].track_clicks is True


async def test_a_wrong_password_is_refused(page: Page, relay: Running) -> None:
    await sign_in(page, relay, password="not the password")
    await expect(page.get_by_role("alert")).to_contain_text("Wrong name and password")
    await page.goto(base(relay) + "/")
    await expect(page).to_have_url(re.compile(r"/login\?next=/$"))


async def test_track_clicks_on_then_off_and_the_next_mails_obey(
    page: Page, relay: Running, sink: Sink, config_path: Path
) -> None:
    await sign_in(page, relay)
    await page.get_by_role("link", name="acme", exact=True).click()
    await page.get_by_role("link", name="Routes").click()
    await page.get_by_role("link", name="acme-news").click()
    switch = page.get_by_label("Track Clicks")
    await expect(switch).not_to_be_checked()
    await switch.check()
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_contain_text("Saved")
    await expect(page.get_by_label("Track Clicks")).to_be_checked()
    assert TRACKED.search(await _sent(relay, sink, "tracked now"))
    text = await read_text(config_path)
    assert text.startswith(COMMENT) and load_config(config_path).find_route("acme-news")

    await page.get_by_label("Track Clicks").uncheck()
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_contain_text("Saved")
    assert not TRACKED.search(await _sent(relay, sink, "untracked again"))
    assert (await read_text(config_path)).startswith(COMMENT)


async def _sent(relay: Running, sink: Sink, subject: str) -> bytes:
    count = len(sink.received)
    await send(relay.smtp_port, simple_message(headers=NEWS_ROUTE, subject=subject))
    return (await sink.wait_for(count + 1))[count].content


async def test_an_inbound_route_cannot_be_switched(page: Page, relay: Running) -> None:
    await sign_in(page, relay)
    await page.goto(base(relay) + "/projects/acme/routes")
    await page.get_by_role("link", name="acme-inbound").click()
    await expect(page.get_by_label("Track Clicks")).to_be_disabled()
    await expect(page.get_by_role("button", name="Save")).to_be_disabled()
    await expect(page.get_by_text("never tracks clicks")).to_be_visible()


async def test_a_click_on_its_message_page_and_a_scanner_hidden_until_asked(
    page: Page, relay: Running, sink: Sink
) -> None:
    (sent,) = await send_tracked(
        relay, sink, '<p><a href="https://example.com/offer">See the offer</a></p>',
        subject="Offer for you")
    await probe_as_scanner(relay, sent.links[0])
    await click_as_person(relay, sent.links[0])
    await events_of(relay, sent.message_id, 2)
    await sign_in(page, relay)
    await page.goto(base(relay) + "/projects/acme/messages")
    await page.get_by_label("Search").fill("Offer for")
    await page.get_by_role("button", name="Search").click()
    await page.get_by_role("link", name="rcpt@example.org").click()
    await expect(page.get_by_role("heading", name="Offer for you")).to_be_visible()
    sent_at = page.locator("dd time").first  # in the viewer's zone, not the page's UTC
    await expect(sent_at).not_to_contain_text("UTC")
    assert (await sent_at.get_attribute("datetime") or "").endswith("Z")
    clicks = page.locator("ol.timeline li.click")
    await expect(clicks).to_have_count(1)
    await expect(clicks.first).to_contain_text("genuine")
    await expect(clicks.first).to_contain_text("Counted as a human click")
    await expect(page.get_by_label("Include machine activity")).not_to_be_checked()
    await page.get_by_label("Include machine activity").check()
    await page.get_by_role("button", name="Show").click()
    await expect(clicks).to_have_count(2)
    scanner = page.locator("ol.timeline li.machine")
    await expect(scanner).to_contain_text("security_scanner")
    await expect(scanner).to_contain_text("security gateway")


async def test_activity_chart_is_drawn_without_breaking_the_policy(
    page: Page, relay: Running, sink: Sink
) -> None:
    (sent,) = await send_tracked(relay, sink, '<p><a href="https://example.com/a">A</a></p>')
    await click_as_person(relay, sent.links[0])
    await events_of(relay, sent.message_id, 1)
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if m.type == "error" else None)
    await sign_in(page, relay)
    await page.goto(base(relay) + "/projects/acme/activity")
    await expect(page.locator("#activity-chart canvas")).to_have_count(1)
    await expect(page.locator("table.numbers tbody tr").first).to_contain_text("1")
    assert refused == []


async def test_a_form_without_its_csrf_token_gets_403(page: Page, relay: Running) -> None:
    await sign_in(page, relay)
    await page.goto(base(relay) + "/routes/acme-news")
    await page.locator('input[name="csrf_token"]').last.evaluate("e => e.remove()")
    await page.get_by_label("Track Clicks").check()
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("heading", name="Form refused")).to_be_visible()
    assert relay.config().find_route("acme-news")[1].track_clicks is False


async def test_sign_out_ends_the_session(page: Page, relay: Running) -> None:
    await sign_in(page, relay)
    cookies = await page.context.cookies()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.goto(base(relay) + "/projects/acme")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.context.add_cookies(cookies)  # a copy of the old cookie
    await page.goto(base(relay) + "/projects/acme")
    await expect(page).to_have_url(re.compile(r"/login\?next="))


@pytest.mark.slow
async def test_the_screenshot_script_takes_every_page(browser: Any, tmp_path: Path) -> None:
    """tests/screenshots.py, which makes docs/images, here into a temporary directory."""
    written = await take(tmp_path)
    assert sorted(f.stem for f in written) == sorted(name for name, *_ in PAGES)
    sizes = await asyncio.to_thread(lambda: [f.stat().st_size for f in written])
    assert min(sizes) > 5000
