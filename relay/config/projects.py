"""The projects of the configuration file: their routes and their webhooks
(config.example.toml, docs/webhooks.md), checked as the rest of the file is."""

from __future__ import annotations

from urllib.parse import urlsplit

from relay.config.table import Table
from tracker.config import ROUTE_TYPES, ProjectConfig, RouteConfig, WebhookConfig
from tracker.webhooks.events import DELIVERY_EVENTS

WEBHOOK_EVENTS = ("message.clicked", "message.opened", *DELIVERY_EVENTS)


def parse_projects(root: Table) -> tuple[ProjectConfig, ...]:
    projects = tuple(_project(t) for t in root.tables("projects"))
    _unique(root, "projects", [p.id for p in projects], "id")
    _unique(root, "projects", [p.sid for p in projects], "sid")
    _unique(root, "projects", [p.token for p in projects], "token")
    route_ids = [r.id for p in projects for r in p.routes]
    _unique(root, "projects.routes", route_ids, "id")
    return projects


def _project(t: Table) -> ProjectConfig:
    sid = t.text("sid")
    if not sid.isascii() or not sid.isalnum() or sid != sid.lower():
        raise t.error("sid", f"must be lower-case letters and digits, not {sid!r}")
    domain = t.get("tracking_domain", str, "") or None
    project = ProjectConfig(
        id=t.text("id"),
        sid=sid,
        token=t.text("token", secret=True),
        tracking_domain=domain.lower() if domain else None,
        routes=tuple(_route(rt) for rt in t.tables("routes")),
        webhooks=tuple(_webhook(wt) for wt in t.tables("webhooks")),
    )
    _unique(t, "routes", [r.slug for r in project.routes], "slug")
    _unique(t, "webhooks", [w.id for w in project.webhooks], "id")
    defaults = [r for r in project.routes if r.default]
    if len(defaults) > 1:
        raise t.error("routes", "only one route may be the default")
    t.done()
    return project


def _route(t: Table) -> RouteConfig:
    route = RouteConfig(
        id=t.text("id"),
        slug=t.text("slug"),
        type=t.text("type", "transactional"),
        default=t.get("default", bool, False),
        track_clicks=t.get("track_clicks", bool, False),
        track_opens=t.get("track_opens", bool, False),
        bot_honeypot=t.get("bot_honeypot", bool, False),
        bounce_notifications=t.get("bounce_notifications", bool, True),
    )
    if route.type not in ROUTE_TYPES:
        raise t.error("type", f"must be one of {', '.join(ROUTE_TYPES)}, not {route.type!r}")
    for key, what in (("track_clicks", "clicks"), ("track_opens", "opens")):
        if route.type == "inbound" and getattr(route, key):
            raise t.error(key, f"an inbound route never tracks {what}")
    t.done()
    return route


def _webhook(t: Table) -> WebhookConfig:
    url = t.text("url")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise t.error("url", f"must be an http(s) URL, not {url!r}")
    events = t.strings("events", WEBHOOK_EVENTS)
    for i, event in enumerate(events):
        if event not in WEBHOOK_EVENTS:
            raise t.error(f"events[{i}]", f"unknown event {event!r}; known: {WEBHOOK_EVENTS}")
    hook = WebhookConfig(
        id=t.text("id"),
        url=url,
        secret=t.text("secret", secret=True),
        events=events,
        include_machine_events=t.get("include_machine_events", bool, False),
        enabled=t.get("enabled", bool, True),
    )
    t.done()
    return hook


def _unique(t: Table, name: str, values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise t.error(name, f"duplicate {what} {value!r}")
        seen.add(value)
