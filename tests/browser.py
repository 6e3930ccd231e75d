"""A real browser for the dashboard's tests: Playwright for Python driving Debian's
``chromium`` (Playwright's own browser download is not used). Where no ``chromium`` is
installed the browser tests are skipped, saying so; ``.ci/run`` installs it, so CI never
skips them. A test that fails leaves a screenshot of its page in ``test-results/``."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from relay.server import Running
from tests.dashboard_helpers import ADMIN, PASSWORD

ROOT = Path(__file__).resolve().parent.parent
FAILURE_SHOTS = ROOT / "test-results"
# Root has no user namespace sandbox for Chromium; headless needs no display.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage"]


def chromium() -> str | None:
    return shutil.which("chromium")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    path = chromium()
    if path is None:
        pytest.skip("no chromium on PATH: the dashboard's browser tests need Debian's "
                    "chromium package (apt-get install chromium; .ci/run installs it)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=path, headless=True,
                                                    args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1200, "height": 900},
                                        timezone_id="Europe/Amsterdam")
    opened = await context.new_page()
    yield opened
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        FAILURE_SHOTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
        await opened.screenshot(path=str(FAILURE_SHOTS / f"{name}.png"), full_page=True)
    await context.close()


def base(relay: Running) -> str:
    return f"http://127.0.0.1:{relay.http_port}"


async def sign_in(page: Page, relay: Running, *, name: str = ADMIN,
                  password: str = PASSWORD, token: str = "") -> None:
    await page.goto(base(relay) + "/login")
    if token:
        await page.get_by_label("Token").fill(token)
    else:
        await page.get_by_label("Name").fill(name)
        await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
