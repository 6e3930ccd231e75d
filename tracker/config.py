"""The configuration the tracker consumes, declared here so that the tracker does not
depend on the relay: ``relay.config`` loads the TOML file into these types, and the
tracker reads the live configuration through ``ConfigSource`` (it changes on reload)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ROUTE_TYPES = ("transactional", "broadcast", "inbound")


@dataclass(frozen=True)
class SigningKey:
    id: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class TrackingConfig:
    base_url: str
    token_ttl_days: int
    signing_keys: tuple[SigningKey, ...]
    settle_seconds: float

    @property
    def scheme(self) -> str:
        return urlsplit(self.base_url).scheme

    @property
    def host(self) -> str:
        """The tracking host with its port, if any (``t.localhost:8080``)."""
        return urlsplit(self.base_url).netloc.lower()

    @property
    def hostname(self) -> str:
        return (urlsplit(self.base_url).hostname or "").lower()


@dataclass(frozen=True)
class HttpConfig:
    listen: str
    trusted_proxies: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class RouteConfig:
    id: str
    slug: str
    type: str
    default: bool
    track_clicks: bool
    track_opens: bool = False
    bot_honeypot: bool = False


@dataclass(frozen=True)
class WebhookConfig:
    id: str
    url: str
    secret: str = field(repr=False)
    events: tuple[str, ...] = ("message.clicked",)
    include_machine_events: bool = False
    enabled: bool = True


@dataclass(frozen=True)
class ProjectConfig:
    id: str
    sid: str
    token: str = field(repr=False)
    tracking_domain: str | None = None
    routes: tuple[RouteConfig, ...] = ()
    webhooks: tuple[WebhookConfig, ...] = ()

    def route_by_slug(self, slug: str) -> RouteConfig | None:
        return next((r for r in self.routes if r.slug == slug), None)

    def default_route(self) -> RouteConfig | None:
        return next((r for r in self.routes if r.default), None)

    def route_by_id(self, route_id: str) -> RouteConfig | None:
        return next((r for r in self.routes if r.id == route_id), None)


class TrackerView(Protocol):
    """What the tracker reads of the configuration (``relay.config.Config`` provides it)."""

    @property
    def tracking(self) -> TrackingConfig: ...

    @property
    def http(self) -> HttpConfig: ...

    @property
    def projects(self) -> tuple[ProjectConfig, ...]: ...


ConfigSource = Callable[[], TrackerView]


def tracking_hosts(config: TrackerView) -> frozenset[str]:
    """Host names whose links are ours: the tracking host (any ``p{sid}.`` below it
    counts through suffix matching) and every project's custom tracking domain."""
    hosts = {config.tracking.hostname}
    hosts.update(p.tracking_domain.lower() for p in config.projects if p.tracking_domain)
    return frozenset(hosts)


def link_base(tracking: TrackingConfig, project: ProjectConfig) -> str:
    """Where a project's links point: ``{scheme}://p{sid}.{host}`` or its own domain."""
    if project.tracking_domain:
        return f"https://{project.tracking_domain}"
    return f"{tracking.scheme}://p{project.sid}.{tracking.host}"
