"""Classification rules as data: thresholds, per-signal probabilities, the network labels that
mean scanner, cloud or privacy proxy, and the version every verdict records
(docs/classification.md).

``rules_from_mapping`` builds them from the optional ``[classification]`` table of the
configuration (and its ``[classification.probabilities]`` sub-table); ``tracker.classify.verdict``
applies them. Changing a default here changes verdicts: bump ``RULES_VERSION`` with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RULES_VERSION = "2026.12-1"


@dataclass(frozen=True)
class Probabilities:
    """How likely a click is automated when one signal fires on its own, in percent.

    Signals are combined as independent evidence, p = 1 − ∏(1 − pᵢ), so two weak signals
    (each below 50) can together make a click a machine click while neither can alone.
    """

    scanner_agent: int = 97  # the agent names a security gateway / link protection
    preview_agent: int = 95  # the agent names a link-preview fetcher
    image_proxy_agent: int = 70  # a mailbox image proxy fetched the link, not a person
    crawler_agent: int = 90  # any other crawler-user-agents entry
    http_library: int = 92  # python-requests, curl, Go-http-client, okhttp …
    headless_browser: int = 95  # HeadlessChrome, PhantomJS, Puppeteer …
    empty_user_agent: int = 85
    bare_mozilla_agent: int = 80  # just "Mozilla/5.0": no browser sends that
    head_request: int = 90  # browsers navigate with GET; link checkers probe with HEAD
    prefetch_request: int = 85  # Purpose / Sec-Purpose: prefetch
    scanner_network: int = 90  # address in a security vendor's range (e.g. Microsoft EOP)
    cloud_network: int = 40  # address in a cloud provider's range: VPNs live there too
    proxy_network: int = 0  # Apple Private Relay: people's own Safari, no evidence either way
    stale_browser: int = 35  # a browser far older than any supported one, as sandboxes use
    missing_accept_language: int = 30  # every browser sends Accept-Language
    missing_fetch_metadata: int = 35  # Chrome ≥ 80 / Firefox ≥ 90 send Sec-Fetch-*
    burst: int = 85  # ≥ burst_min_links distinct links within burst_window_s
    rapid_hits: int = 80  # more than rapid_max_hits hits within rapid_window_s
    all_links: int = 45  # every tracked link of the message hit: people do that too
    fanout: int = 45  # one address hit several recipients' messages (NAT makes this weak)
    early_click: int = 20  # seconds after sending: weak on its own, by design
    honeypot_hit: int = 99  # the hidden link, which no person can see
    near_honeypot: int = 95  # close in time to a honeypot hit on the same message
    # A burst, rapid hits or every link hit, by a person in a hurry: a current browser's
    # user-activated navigations with its language, from a home network, one client.
    hurried_reader: int = 10
    # Opens (docs/opens.md)
    apple_mpp: int = 95  # Apple's MPP fetches every image at delivery, read or not
    gmail_prefetch: int = 95  # Gmail fetches a fresh message's images before anyone reads it
    image_proxy_open: int = 10  # Gmail's image proxy fetches when the person views the mail
    yahoo_proxy_open: int = 25  # Yahoo's proxy as Gmail's, less documented: less certain
    proxy_off_network: int = 30  # Gmail's proxy agent from outside Google's network
    open_before_delivery: int = 95  # an open of a copy not yet delivered upstream


@dataclass(frozen=True)
class Rules:
    version: str = RULES_VERSION
    burst_window_s: float = 3.0
    burst_min_links: int = 3
    rapid_window_s: float = 1.0
    rapid_max_hits: int = 2
    all_links_window_s: float = 60.0
    all_links_min_links: int = 3  # smaller messages: clicking every link is normal reading
    fanout_min_messages: int = 4
    fanout_window_s: float = 120.0  # how far apart one address's hits still count as fan-out
    early_click_s: float = 30.0
    honeypot_window_s: float = 5.0
    # Chrome 109 is the last for Windows 7/8 and most stragglers sit above 100; Safe Links'
    # detonation browsers have been seen with Chrome 7x–9x agents.
    stale_chrome_major: int = 100
    stale_firefox_major: int = 91  # Firefox ESR 91 (2021)
    # Network labels (given to client addresses by the configured CIDR lists). A label may
    # also carry its kind as a prefix: "scanner:acme_gateway", "cloud:hetzner", "proxy:tor".
    scanner_networks: tuple[str, ...] = (
        "microsoft_eop", "microsoft_defender", "proofpoint", "mimecast", "barracuda",
        "cisco_secure_email", "trend_micro", "symantec", "forcepoint", "sophos", "fortinet",
        "zscaler", "google_safe_browsing",
        "google",  # Google's own service ranges: Gmail's fetchers, not people or its cloud
    )
    cloud_networks: tuple[str, ...] = (
        "aws", "gcp", "azure", "oracle_cloud", "digitalocean", "linode", "hetzner", "ovh",
        "alibaba_cloud", "tencent_cloud",
    )
    proxy_networks: tuple[str, ...] = ("apple_private_relay",)
    probabilities: Probabilities = field(default_factory=Probabilities)


DEFAULT_RULES = Rules()

_POSITIVE_FLOATS = ("burst_window_s", "rapid_window_s", "all_links_window_s",
                    "honeypot_window_s")
_NON_NEGATIVE_FLOATS = ("early_click_s",)
_POSITIVE_INTS = ("burst_min_links", "rapid_max_hits", "all_links_min_links",
                  "fanout_min_messages")


def rules_from_mapping(data: Mapping[str, Any]) -> Rules:
    """Rules from a ``[classification]`` table; every key is optional and defaults as above.
    Raises ValueError naming the key for an unknown key, a wrong type or a value out of range.
    """
    defaults = {f.name: getattr(DEFAULT_RULES, f.name) for f in dataclasses.fields(Rules)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in defaults:
            raise ValueError(f"{key}: unknown key")
        if key == "probabilities":
            values[key] = _probabilities(value)
        else:
            values[key] = _typed(key, value, defaults[key])
    rules = Rules(**{**defaults, **values})
    _check_ranges(rules)
    return rules


def _probabilities(data: Any) -> Probabilities:
    if not isinstance(data, Mapping):
        raise ValueError("probabilities: must be a table")
    names = {f.name for f in dataclasses.fields(Probabilities)}
    values = {}
    for key, value in data.items():
        name = f"probabilities.{key}"
        if key not in names:
            raise ValueError(f"{name}: unknown key")
        if not _is_int(value) or not 0 <= value <= 100:
            raise ValueError(f"{name}: must be an integer from 0 to 100, not {value!r}")
        values[key] = value
    return dataclasses.replace(DEFAULT_RULES.probabilities, **values)


def _typed(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, str):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{key}: must be a non-empty string")
        return value
    if isinstance(default, float):
        if not (_is_int(value) or isinstance(value, float)):
            raise ValueError(f"{key}: must be a number, not {value!r}")
        return float(value)
    if isinstance(default, int):
        if not _is_int(value):
            raise ValueError(f"{key}: must be an integer, not {value!r}")
        return value
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: must be an array of strings")
    return tuple(value)


def _check_ranges(rules: Rules) -> None:
    for key in _POSITIVE_FLOATS:
        if getattr(rules, key) <= 0:
            raise ValueError(f"{key}: must be greater than 0")
    for key in _NON_NEGATIVE_FLOATS:
        if getattr(rules, key) < 0:
            raise ValueError(f"{key}: must not be negative")
    for key in _POSITIVE_INTS:
        if getattr(rules, key) < 1:
            raise ValueError(f"{key}: must be at least 1")
    for key in ("stale_chrome_major", "stale_firefox_major"):
        if getattr(rules, key) < 0:
            raise ValueError(f"{key}: must not be negative")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
