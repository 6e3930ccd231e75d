"""The configuration the tracker consumes, declared here so that the tracker does not
depend on the relay: ``relay.config.load`` loads the TOML file into these types, and the
tracker reads the live configuration through ``ConfigSource`` (it changes on reload)."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol
from urllib.parse import urlsplit

from tracker.clicks.network import NetworkTable, address_hasher, derive_hash_key

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
    store_deadline_ms: int = 500  # the redirect waits this long for the observation's commit
    address_hash_key: str | None = field(default=None, repr=False)
    promotion_processes: int = 1  # processes that classify clicks (relay/promotion.py)

    @cached_property
    def address_hasher(self) -> hmac.HMAC:
        """The keyed state of the client address hash (see ``tracker.clicks.network``)."""
        return address_hasher(derive_hash_key(self.address_hash_key, self.signing_keys[0].secret))

    @property
    def scheme(self) -> str:
        return urlsplit(self.base_url).scheme

    @property
    def host(self) -> str:
        """The tracking host with its port, if any (``t.localhost:8080``)."""
        return urlsplit(self.base_url).netloc.lower()

    @cached_property  # read on every click
    def hostname(self) -> str:
        return (urlsplit(self.base_url).hostname or "").lower()

    @cached_property
    def shared_host(self) -> bool:
        """Whether the tracking host is an IP address, which has no ``p{sid}.`` names below
        it: then every project's links are on the host itself, and any HTTP client
        follows them without wildcard DNS (docs/redirect.md)."""
        try:
            ipaddress.ip_address(self.hostname)
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class HttpConfig:
    listen: str
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # Plain clicks answered by the listener's front (tracker/http/front.py); false: every
    # request by aiohttp, the library path the front departs from.
    click_front: bool = True
    # The front closes a connection that has not sent a whole request head within this
    # (408 first): a head trickled byte by byte holds no connection (docs/hostile-input.md).
    request_head_timeout_seconds: float = 20.0


@dataclass(frozen=True)
class RouteConfig:
    id: str
    slug: str
    type: str
    default: bool
    track_clicks: bool
    track_opens: bool = False
    bot_honeypot: bool = False
    bounce_notifications: bool = True  # a copy that fails for good is told to its sender


@dataclass(frozen=True)
class WebhookConfig:
    id: str
    url: str
    secret: str = field(repr=False)
    events: tuple[str, ...] = ("message.clicked",)
    include_machine_events: bool = False
    enabled: bool = True


@dataclass(frozen=True)
class WebhookDeliveryConfig:
    """How the dispatcher sends webhooks: retries span at least ``max_retry_hours``."""

    max_retry_hours: float = 24.0
    retry_initial_seconds: float = 10.0  # doubles per attempt, with jitter, at most 1 h
    concurrency: int = 8  # attempts in flight at once
    per_webhook_concurrency: int = 4  # of those, at most this many to one webhook
    timeout_seconds: float = 10.0  # a 2xx within this is success


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
    """What the tracker reads of the configuration (``relay.config.load.Config`` provides it)."""

    @property
    def tracking(self) -> TrackingConfig: ...

    @property
    def http(self) -> HttpConfig: ...

    @property
    def projects(self) -> tuple[ProjectConfig, ...]: ...

    @property
    def networks(self) -> NetworkTable: ...


ConfigSource = Callable[[], TrackerView]


def tracking_hosts(config: TrackerView) -> frozenset[str]:
    """Host names whose links are ours: the tracking host (any ``p{sid}.`` below it
    counts through suffix matching) and every project's custom tracking domain."""
    hosts = {config.tracking.hostname}
    hosts.update(p.tracking_domain.lower() for p in config.projects if p.tracking_domain)
    return frozenset(hosts)


def link_base(tracking: TrackingConfig, project: ProjectConfig) -> str:
    """Where a project's links point: ``{scheme}://p{sid}.{host}``, the host itself when
    it is an IP address, or the project's own domain."""
    if project.tracking_domain:
        return f"https://{project.tracking_domain}"
    if tracking.shared_host:
        return f"{tracking.scheme}://{tracking.host}"
    return f"{tracking.scheme}://p{project.sid}.{tracking.host}"
