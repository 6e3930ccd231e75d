"""Helpers for the dashboard's tests: a configuration with an admin account and a webhook,
and a visitor that signs in and follows the forms over plain HTTP, cookies kept, as a
browser without JavaScript would (the browser tests are in tests/test_dashboard_browser.py)."""

from __future__ import annotations

import functools
import re
from types import TracebackType
from typing import Any

import aiohttp

from relay.config.dashboard import hash_password
from relay.server import Running

ADMIN = "ada"
PASSWORD = "correct horse battery staple"
WEBHOOK_SECRET = "whsec_test_0123456789abcdef"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LOADED = re.compile(r'name="loaded" value="([^"]*)"')


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)


def with_dashboard(settings: dict[str, Any], webhook_url: str = "http://127.0.0.1:9/hook"
                   ) -> dict[str, Any]:
    """``settings`` with an admin account and one webhook on the project acme."""
    settings["dashboard"] = {"users": [{"name": ADMIN, "password_hash": password_hash()}]}
    settings["projects"][0]["webhooks"] = [
        {"id": "acme-hook", "url": webhook_url, "secret": WEBHOOK_SECRET,
         "events": ["message.clicked"]},
    ]
    return settings


class Visitor:
    """One browser's worth of cookies against the relay's HTTP listener."""

    def __init__(self, relay: Running, headers: dict[str, str] | None = None) -> None:
        self.base = f"http://127.0.0.1:{relay.http_port}"
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                             headers=headers)

    async def __aenter__(self) -> Visitor:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.session.close()

    async def get(self, path: str, **kwargs: Any) -> tuple[int, aiohttp.ClientResponse, str]:
        async with self.session.get(self.base + path, allow_redirects=False,
                                    **kwargs) as response:
            return response.status, response, await response.text()

    async def post(self, path: str, data: dict[str, str], **kwargs: Any
                   ) -> tuple[int, aiohttp.ClientResponse, str]:
        async with self.session.post(self.base + path, data=data, allow_redirects=False,
                                     **kwargs) as response:
            return response.status, response, await response.text()

    async def form_token(self, path: str) -> str:
        status, _, page = await self.get(path)
        assert status == 200, (path, status)
        found = CSRF.search(page)
        assert found, f"no CSRF token on {path}"
        return found.group(1)

    async def sign_in(self, name: str = ADMIN, password: str = PASSWORD, token: str = ""
                      ) -> tuple[int, aiohttp.ClientResponse, str]:
        csrf = await self.form_token("/login")
        return await self.post("/login", {"name": name, "password": password, "token": token,
                                          "csrf_token": csrf})

    async def submit(self, page: str, action: str, fields: dict[str, str] | None = None
                     ) -> tuple[int, aiohttp.ClientResponse, str]:
        """Post a form of ``page`` to ``action`` with the page's CSRF token."""
        status, _, html = await self.get(page)
        assert status == 200, (page, status)
        data = {"csrf_token": CSRF.findall(html)[-1], **(fields or {})}
        loaded = LOADED.search(html)
        if loaded:
            data.setdefault("loaded", loaded.group(1))
        return await self.post(action, data)
