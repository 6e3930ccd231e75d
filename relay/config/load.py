"""The configuration: one TOML file loaded into typed, frozen objects and checked at load
time (config.example.toml). Errors name the file, the key and what is wrong."""

from __future__ import annotations

import hmac
import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit

from relay.config.dashboard import DashboardConfig, parse_dashboard
from relay.config.networks import parse_networks
from relay.config.operations import RetentionConfig, parse_health, parse_retention
from relay.config.projects import parse_projects
from relay.config.store import StoreConfig, parse_store
from relay.config.table import ConfigError, Table
from relay.message.limits import MessageLimits
from tracker.classify.rules import DEFAULT_RULES, Rules, rules_from_mapping
from tracker.clicks.network import NetworkTable
from tracker.config import (
    HttpConfig,
    IPNetwork,
    ProjectConfig,
    RouteConfig,
    SigningKey,
    TrackingConfig,
    WebhookDeliveryConfig,
)
from tracker.http.health import HealthConfig
from tracker.tokens import check_signing_secret

__all__ = ["Config", "ConfigError", "load_config", "parse_config"]

UPSTREAM_SCHEMES = MappingProxyType({"smtp": 25, "smtp+starttls": 587, "smtps": 465})
DEFAULT_LIMITS = MessageLimits()
# A project's or the team's token is all that guards sending and the API: shorter ones
# are warned about (not refused: the example's development tokens are shorter).
MIN_TOKEN_LENGTH = 32
MIN_LINE_LENGTH = 1001  # what aiosmtpd allows: a line of 998 octets, its CRLF, a dot
# Each promotion process holds its own copy of the user-agent tables (tens of MB) and
# takes a core when busy: more than this is a typing error, not a machine.
MAX_PROMOTION_PROCESSES = 32


@dataclass(frozen=True)
class SmtpConfig:
    listen: str = "127.0.0.1:2525"
    listen_tls: str | None = None
    hostname: str = "localhost"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    auth_require_tls: bool = False
    max_message_size: int = 26_214_400
    max_recipients: int = 50
    limits: MessageLimits = field(default_factory=MessageLimits)
    parse_workers: int = 2  # processes that read and rewrite mail; 0: a thread instead
    own_data_reader: bool = True  # DATA read by relay/submission/smtp_data.py; false: by aiosmtpd
    max_line_length: int = 65_536  # octets of a DATA line with its CRLF; longer gets 500


@dataclass(frozen=True)
class UpstreamConfig:
    url: str = field(repr=False)
    scheme: str  # maildir | smtp | smtp+starttls | smtps
    host: str = ""
    port: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    maildir: Path | None = None
    max_retry_hours: float = 48.0
    timeout_seconds: float = 60.0
    retry_initial_seconds: float = 30.0
    concurrency: int = 8
    tls_ca_file: Path | None = None  # CA bundle (PEM) the upstream's certificate is checked with
    tls_client_cert: Path | None = None  # certificate (PEM) shown to an upstream that asks
    tls_client_key: Path | None = None  # its private key, when not in tls_client_cert


@dataclass(frozen=True)
class ApiConfig:
    team_token: str = field(repr=False)


@dataclass(frozen=True)
class Config:
    path: Path
    smtp: SmtpConfig
    upstream: UpstreamConfig
    http: HttpConfig
    tracking: TrackingConfig
    store: StoreConfig
    api: ApiConfig
    projects: tuple[ProjectConfig, ...]
    webhook_delivery: WebhookDeliveryConfig = field(default_factory=WebhookDeliveryConfig)
    networks: NetworkTable = field(default_factory=NetworkTable)
    health: HealthConfig = field(default_factory=HealthConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    classification: Rules = DEFAULT_RULES
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)

    def project_by_token(self, token: str) -> ProjectConfig | None:
        found = None
        for p in self.projects:  # compare against every token: constant time per project
            # A byte that is not UTF-8 (a surrogate from the HTTP parser) matches none.
            if hmac.compare_digest(p.token.encode(), token.encode("utf-8", "surrogatepass")):
                found = p
        return found

    def project_by_id(self, project_id: str) -> ProjectConfig | None:
        return next((p for p in self.projects if p.id == project_id), None)

    def find_route(self, route_id: str) -> tuple[ProjectConfig, RouteConfig] | None:
        for p in self.projects:
            route = p.route_by_id(route_id)
            if route is not None:
                return p, route
        return None

    def short_tokens(self) -> list[str]:
        """Which tokens are shorter than ``MIN_TOKEN_LENGTH`` characters, by their key."""
        tokens = [("api.team_token", self.api.team_token)]
        tokens += [(f"projects[{i}].token ({p.id})", p.token)
                   for i, p in enumerate(self.projects)]
        return [name for name, token in tokens if len(token) < MIN_TOKEN_LENGTH]

    def secrets(self) -> list[str]:
        """Every configured secret, for the start-up warning about dev secrets."""
        out = [k.secret for k in self.tracking.signing_keys]
        out += [self.api.team_token]
        out += [self.tracking.address_hash_key] if self.tracking.address_hash_key else []
        for p in self.projects:
            out.append(p.token)
            out += [w.secret for w in p.webhooks]
        return out


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(data, path)


def parse_config(data: dict[str, Any], path: Path) -> Config:
    root = Table(data, "", str(path))
    base = path.resolve().parent
    config = Config(
        path=path,
        smtp=_smtp(root.table("smtp"), base),
        upstream=_upstream(root.table("upstream"), base),
        http=_http(root.table("http")),
        tracking=_tracking(root.table("tracking", required=True)),
        store=parse_store(root.table("store"), base),
        api=_api(root.table("api", required=True)),
        projects=parse_projects(root),
        webhook_delivery=_webhook_delivery(root.table("webhook_delivery")),
        networks=parse_networks(root.table("networks"), base),
        health=parse_health(root.table("health")),
        retention=parse_retention(root.table("retention")),
        classification=_classification(root.table("classification")),
        dashboard=parse_dashboard(root.table("dashboard")),
    )
    root.done()
    return config


def _classification(t: Table) -> Rules:
    """The classifier's thresholds; ``tracker.classify.rules`` checks its own keys."""
    try:
        return rules_from_mapping(t.rest())
    except ValueError as exc:
        raise ConfigError(f"{t.file}: {t.path}.{exc}") from exc


def _smtp(t: Table, base: Path) -> SmtpConfig:
    cert, key = t.get("tls_cert", str, ""), t.get("tls_key", str, "")
    if bool(cert) != bool(key):
        raise t.error("tls_key" if cert else "tls_cert", "tls_cert and tls_key go together")
    cfg = SmtpConfig(
        listen=_address(t, "listen", "127.0.0.1:2525"),
        listen_tls=_address(t, "listen_tls", None) if t.has("listen_tls") else None,
        hostname=t.text("hostname", "localhost"),
        tls_cert=base / cert if cert else None,
        tls_key=base / key if key else None,
        auth_require_tls=t.get("auth_require_tls", bool, False),
        max_message_size=t.positive("max_message_size", 26_214_400),
        max_recipients=t.positive("max_recipients", 50),
        limits=MessageLimits(
            max_parts=t.positive("max_parts", DEFAULT_LIMITS.max_parts),
            max_depth=t.positive("max_depth", DEFAULT_LIMITS.max_depth),
            max_links=t.positive("max_links", DEFAULT_LIMITS.max_links),
            max_html_tags=t.positive("max_html_tags", DEFAULT_LIMITS.max_html_tags),
        ),
        parse_workers=t.get("parse_workers", int, 2),
        own_data_reader=t.get("own_data_reader", bool, True),
        max_line_length=t.positive("max_line_length", 65_536),
    )
    if cfg.parse_workers < 0:
        raise t.error("parse_workers", "must be 0 or more")
    if cfg.max_line_length < MIN_LINE_LENGTH:
        raise t.error("max_line_length", f"must be at least {MIN_LINE_LENGTH} (RFC 5321 "
                      "§4.5.3.1.6: 1000 octets with the CRLF)")
    if cfg.listen_tls and not cfg.tls_cert:
        raise t.error("listen_tls", "needs tls_cert and tls_key")
    for name, file in (("tls_cert", cfg.tls_cert), ("tls_key", cfg.tls_key)):
        if file is not None and not file.is_file():
            raise t.error(name, f"file {file} does not exist")
    t.done()
    return cfg


def _address(t: Table, name: str, default: str | None) -> str:
    value = t.text(name, default) if default is not None else t.text(name)
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise t.error(name, f"must be host:port, not {value!r}")
    return value


def _upstream(t: Table, base: Path) -> UpstreamConfig:
    url = t.text("url", "maildir:./data/outbox", secret=True)
    common: dict[str, Any] = {
        "max_retry_hours": t.positive_number("max_retry_hours", 48.0),
        "timeout_seconds": t.positive_number("timeout_seconds", 60.0),
        "retry_initial_seconds": t.positive_number("retry_initial_seconds", 30.0),
        "concurrency": t.positive("concurrency", 8),
        **_upstream_tls(t, base),
    }
    t.done()
    if url.startswith("maildir:"):
        target = url[len("maildir:") :]
        if not target:
            raise t.error("url", "maildir: needs a path")
        return UpstreamConfig(url, "maildir", maildir=base / target, **common)
    parts = urlsplit(url)
    if parts.scheme not in UPSTREAM_SCHEMES or not parts.hostname:
        raise t.error("url", "must be maildir:PATH, smtp://, smtp+starttls:// or smtps://host:port")
    try:
        port = parts.port or UPSTREAM_SCHEMES[parts.scheme]
    except ValueError as exc:
        raise t.error("url", f"bad port: {exc}") from exc
    return UpstreamConfig(
        url,
        parts.scheme,
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        **common,
    )


def _upstream_tls(t: Table, base: Path) -> dict[str, Path | None]:
    """The files of ``[upstream]``'s TLS options, each checked to exist."""
    files = {name: base / t.text(name) if t.has(name) else None
             for name in ("tls_ca_file", "tls_client_cert", "tls_client_key")}
    for name, file in files.items():
        if file is not None and not file.is_file():
            raise t.error(name, f"file {file} does not exist")
    if files["tls_client_key"] is not None and files["tls_client_cert"] is None:
        raise t.error("tls_client_key", "needs tls_client_cert")
    return files


def _http(t: Table) -> HttpConfig:
    listen = _address(t, "listen", "127.0.0.1:8080")
    proxies: list[IPNetwork] = []
    for i, cidr in enumerate(t.strings("trusted_proxies", ())):
        try:
            proxies.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as exc:
            raise t.error(f"trusted_proxies[{i}]", str(exc)) from exc
    click_front = t.get("click_front", bool, True)
    head_timeout = t.positive_number("request_head_timeout_seconds", 20.0)
    t.done()
    return HttpConfig(listen=listen, trusted_proxies=tuple(proxies), click_front=click_front,
                      request_head_timeout_seconds=head_timeout)


def _tracking(t: Table) -> TrackingConfig:
    base_url = t.text("base_url")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise t.error("base_url", f"must be http(s)://host[:port] with no path, not {base_url!r}")
    keys: list[SigningKey] = []
    for kt in t.tables("signing_keys"):
        keys.append(SigningKey(kt.text("id"), kt.text("secret", secret=True)))
        if len(keys[-1].secret) < 32:
            raise kt.error("secret", "must be at least 32 characters")
        if problem := check_signing_secret(keys[-1].secret):
            raise kt.error("secret", problem)
        kt.done()
    if not keys:
        raise t.error("signing_keys", "needs at least one key")
    if len({k.id for k in keys}) != len(keys):
        raise t.error("signing_keys", "key ids must be unique")
    cfg = TrackingConfig(
        base_url=base_url.rstrip("/"),
        token_ttl_days=t.positive("token_ttl_days", 30),
        signing_keys=tuple(keys),
        settle_seconds=t.get("settle_seconds", float, 10.0),
        store_deadline_ms=t.positive("store_deadline_ms", 500),
        address_hash_key=t.text("address_hash_key", "", secret=True) or None,
        promotion_processes=t.positive("promotion_processes", 1),
    )
    if cfg.promotion_processes > MAX_PROMOTION_PROCESSES:
        raise t.error("promotion_processes", f"must be at most {MAX_PROMOTION_PROCESSES}")
    if cfg.settle_seconds < 0:
        raise t.error("settle_seconds", "must not be negative")
    if cfg.address_hash_key is not None and len(cfg.address_hash_key) < 32:
        raise t.error("address_hash_key", "must be at least 32 characters")
    t.done()
    return cfg


def _api(t: Table) -> ApiConfig:
    cfg = ApiConfig(team_token=t.text("team_token", secret=True))
    t.done()
    return cfg


def _webhook_delivery(t: Table) -> WebhookDeliveryConfig:
    cfg = WebhookDeliveryConfig(
        max_retry_hours=t.positive_number("max_retry_hours", 24.0),
        retry_initial_seconds=t.positive_number("retry_initial_seconds", 10.0),
        concurrency=t.positive("concurrency", 8),
        per_webhook_concurrency=t.positive("per_webhook_concurrency", 4),
        timeout_seconds=t.positive_number("timeout_seconds", 10.0),
    )
    if cfg.per_webhook_concurrency > cfg.concurrency:
        raise t.error("per_webhook_concurrency", "must not exceed concurrency")
    t.done()
    return cfg
