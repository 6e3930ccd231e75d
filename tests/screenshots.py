"""Screenshots of the dashboard's main pages for docs/dashboard.md, taken with the test
suite's browser (tests/browser.py) against a clickrelay started as the tests start it, with a
few mails sent over SMTP and clicked by a person and by a scanner.

    .venv/bin/python -m tests.screenshots        # writes docs/images/dashboard-*.png

The test suite runs the same steps into a temporary directory (test_dashboard_browser.py),
so that the script keeps working; only this command writes into docs/."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path

import tomlkit
from playwright.async_api import Page, async_playwright

from relay.config.load import load_config
from relay.server import Running, running
from tests.api_helpers import write_text
from tests.browser import CHROMIUM_ARGS, ROOT, base, chromium, sign_in
from tests.clicking import click_as_person, events_of, probe_as_scanner, send_tracked
from tests.conftest import base_settings, send, simple_message, wait_until
from tests.dashboard_helpers import with_dashboard
from tests.sink import Sink

DOCS_IMAGES = ROOT / "docs" / "images"
NEWSLETTER = ('<p>Our spring collection is here. <a href="https://shop.example.com/spring">'
              "See what's new</a> or <a href=\"https://shop.example.com/sale\">shop the sale"
              '</a>.</p><p><a href="https://shop.example.com/unsubscribe">Unsubscribe</a></p>')
# (file name, path, full page, viewport width): a phone's width for one of them.
PAGES = (
    ("dashboard-sign-in", "/login", False, 1100),
    ("dashboard-routes", "/projects/acme/routes", False, 1100),
    ("dashboard-route-settings", "/routes/acme-news", False, 1100),
    ("dashboard-activity", "/projects/acme/activity?machine=1", True, 1100),
    ("dashboard-messages", "/projects/acme/messages", False, 1100),
    ("dashboard-message", "", True, 1100),
    ("dashboard-spool", "/spool", False, 1100),
    ("dashboard-message-phone", "", False, 390),
)


async def take(target: Path) -> list[Path]:
    """Start clickrelay with some activity and write the screenshots into ``target``."""
    path = chromium()
    if path is None:
        raise RuntimeError("no chromium on PATH (apt-get install chromium)")
    await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
    sink = Sink()
    await sink.start()
    with tempfile.TemporaryDirectory() as tmp:
        settings = with_dashboard(base_settings(Path(tmp), sink.port))
        config_path = Path(tmp) / "clickrelay.toml"
        await write_text(config_path, tomlkit.dumps(settings))
        try:
            async with running(load_config(config_path)) as relay:
                message_id = await _activity(relay, sink)
                return await _shoot(relay, path, target, message_id)
        finally:
            await sink.stop()


async def _activity(relay: Running, sink: Sink) -> str:
    rcpts = ["maria@example.org", "li@example.net", "sam@example.com"]
    sent = await send_tracked(relay, sink, NEWSLETTER, subject="Spring collection",
                              headers="X-LM-Tag: spring\r\n", rcpts=rcpts)
    await probe_as_scanner(relay, sent[0].links[0])
    await click_as_person(relay, sent[0].links[0])
    await click_as_person(relay, sent[0].links[1])
    await click_as_person(relay, sent[1].links[1])
    await events_of(relay, sent[0].message_id, 3)
    await events_of(relay, sent[1].message_id, 1)
    # One copy the upstream defers, retried an hour later: the spool shows it.
    config = relay.config()
    relay.config.replace(dataclasses.replace(config, upstream=dataclasses.replace(
        config.upstream, retry_initial_seconds=3600.0)))
    sink.fail("MAIL", "451 4.7.1 greylisted, try again later")
    await send(relay.smtp_port, simple_message(
        '<p>Your receipt: <a href="https://shop.example.com/orders/1042">order 1042</a></p>',
        subject="Your receipt"), rcpts=["kim@example.org"])

    async def deferred() -> bool:
        return any(m.attempts for m in await relay.store.spool_copies("queued", 10))

    await wait_until(deferred)
    return sent[0].message_id


async def _shoot(relay: Running, executable: str, target: Path, message_id: str
                 ) -> list[Path]:
    written = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, headless=True,
                                                   args=CHROMIUM_ARGS)
        for name, path, full, width in PAGES:
            context = await browser.new_context(viewport={"width": width, "height": 760},
                                                device_scale_factor=1)
            page = await context.new_page()
            if name != "dashboard-sign-in":
                await sign_in(page, relay)
            await page.goto(base(relay) + (path or f"/messages/{message_id}?machine=1"))
            await _settle(page)
            file = target / f"{name}.png"
            await page.screenshot(path=str(file), full_page=full)
            written.append(file)
            await context.close()
        await browser.close()
    return written


async def _settle(page: Page) -> None:
    await page.wait_for_load_state("networkidle")


def main() -> int:
    written = asyncio.run(take(DOCS_IMAGES))
    for file in written:
        print(file.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    shutil.which("chromium") or sys.exit("no chromium on PATH (apt-get install chromium)")
    sys.exit(main())
