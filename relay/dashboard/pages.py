"""What every dashboard page shares: its context on the app, the Jinja2 templates
(aiohttp-jinja2), the security headers of a page, times as the viewer's browser shows them,
and the error pages. A page's view is wrapped by ``relay.dashboard.auth.signed_in``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from relay.api.common import Api
from relay.config.load import Config
from relay.dashboard.store import DashboardStore
from store.records import DashboardSession

STATIC_DIR = Path(__file__).resolve().parent / "static"
# No inline script and no origin but ours; styles only from our own sheet too. uPlot sets
# element styles from script, which CSP allows.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class Dashboard:
    """The dashboard's view of the running clickrelay: the API's context (configuration,
    its write lock, the sign-in throttle, the webhook dispatcher's wake-up), the store,
    and the delivery worker's wake-up for a retried copy."""

    api: Api
    store: DashboardStore
    wake_delivery: Callable[[], None] = lambda: None

    def config(self) -> Config:
        return self.api.live()


DASHBOARD_KEY: web.AppKey[Dashboard] = web.AppKey("dashboard")
# The request's session, set by auth.signed_in.
SESSION_KEY: web.RequestKey[DashboardSession] = web.RequestKey("dashboard_session")


def setup_templates(app: web.Application) -> None:
    aiohttp_jinja2.setup(
        app, loader=jinja2.PackageLoader("relay.dashboard", "templates"),
        autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.StrictUndefined,
        filters={"when": when, "utc": utc_text}, default_helpers=False,
    )


def dashboard_of(request: web.Request) -> Dashboard:
    return request.app[DASHBOARD_KEY]


def session_of(request: web.Request) -> DashboardSession:
    return request[SESSION_KEY]


def render(request: web.Request, template: str, context: dict[str, Any],
           status: int = 200) -> web.Response:
    """A page, with the session's CSRF token and user for its forms and header."""
    session = request.get(SESSION_KEY)
    context = {"session": session, "csrf": session.csrf_token if session else "",
               "path": request.path, **context}
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    response.headers.update(PAGE_HEADERS)
    return response


def error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    return render(request, "error.html", {"title": title, "message": message}, status)


def when(us: int | None) -> str:
    """An ISO 8601 time (UTC) for a ``<time datetime>``; the browser shows it locally."""
    if us is None:
        return ""
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def utc_text(us: int | None) -> str:
    """The same time as text, for a page read without JavaScript."""
    if us is None:
        return "—"
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
