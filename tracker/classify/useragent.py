"""What a User-Agent header tells about the client: the device, client type and client name
reported in events (from ua-parser), and the bot facts the classifier uses (the known agents of
``tracker.classify.agents``, the browser version the agent claims).

Both are cached per agent string: ua-parser's pure-Python resolver takes about a millisecond a
string, and mail clicks repeat a small set of agent strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Final

import ua_parser

from tracker.classify.agents import PREVIEW, PROXY, SCANNER, AgentMatch, known_agents

_CACHE_SIZE = 8192


@dataclass(frozen=True)
class ClientInfo:
    device_type: str  # desktop | mobile | tablet
    client_type: str  # browser | email_client | app | bot | unknown
    client_name: str


@dataclass(frozen=True)
class AgentFacts:
    empty: bool
    bare_mozilla: bool
    match: AgentMatch | None  # the most specific known agent, curated entries first
    browser: str | None  # "chrome", "firefox", "safari", "msie", … when it claims a browser
    browser_major: int | None


# -- facts for the classifier ---------------------------------------------------------------------

_BARE = re.compile(r"Mozilla/\d\.\d( \(compatible;?\))?")
_BROWSERS = (
    ("msie", re.compile(r"MSIE (\d+)|Trident/\d+.*rv:(\d+)")),
    # Chrome and Firefox on iOS are WebKit underneath: versions and headers are Safari's.
    ("chrome_ios", re.compile(r"CriOS/(\d+)")),
    ("firefox_ios", re.compile(r"FxiOS/(\d+)")),
    ("chrome", re.compile(r"(?:Chrome|Chromium)/(\d+)")),
    ("firefox", re.compile(r"Firefox/(\d+)")),
    ("safari", re.compile(r"Version/(\d+)[.\d]* (?:Mobile/\w+ )?Safari/")),
)


def preload() -> None:
    """Build the pattern index and ua-parser's matchers now (~0.25 s together) rather than on
    the first click, which would otherwise stall the event loop that classifies it."""
    client_info("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                "Gecko) Chrome/131.0.0.0 Safari/537.36 clickrelay-preload")


# Memoisation of a pure function (a header in, its facts out), not state.
@lru_cache(maxsize=_CACHE_SIZE)
def agent_facts(user_agent: str) -> AgentFacts:
    """The bot facts of one User-Agent header, computed once per distinct string."""
    text = user_agent.strip()
    matches = known_agents(text) if text else []
    browser, major = _browser(text)
    return AgentFacts(
        empty=not text,
        bare_mozilla=_BARE.fullmatch(text) is not None,
        match=matches[0] if matches else None,
        browser=browser,
        browser_major=major,
    )


def _browser(text: str) -> tuple[str | None, int | None]:
    for name, regex in _BROWSERS:
        found = regex.search(text)
        if found:
            return name, int(next(g for g in found.groups() if g))
    return None, None


# -- device and client for events -----------------------------------------------------------------

_EMAIL_CLIENTS = frozenset({"Outlook", "Thunderbird", "Apple Mail", "Windows Live Mail",
                            "Airmail", "Lotus Notes", "Postbox", "Mailbird", "eM Client"})
_APPS = frozenset({"Facebook", "Instagram", "LinkedIn", "Line", "WeChat", "Google",
                   "Twitter", "Snapchat", "Pinterest", "TikTok", "Chrome Mobile WebView",
                   "Mobile Safari UI/WKWebView", "Gmail"})
_NAMES: Final[Mapping[str, str]] = MappingProxyType({
    "Mobile Safari": "Safari", "Chrome Mobile": "Chrome", "Chrome Mobile iOS": "Chrome",
    "Firefox Mobile": "Firefox", "Firefox iOS": "Firefox", "Edge Mobile": "Edge",
    "Chrome Mobile WebView": "Android WebView", "Google": "Google App",
    "Mobile Safari UI/WKWebView": "iOS WebView", "IE": "Internet Explorer",
})


# Memoisation of a pure function, as ``agent_facts``.
@lru_cache(maxsize=_CACHE_SIZE)
def client_info(user_agent: str) -> ClientInfo:
    """Device type, client type and client name of one User-Agent header (cached)."""
    text = user_agent.strip()
    if not text:
        return ClientInfo("desktop", "bot", "Unknown")
    parsed = ua_parser.parse(text)
    family = parsed.user_agent.family if parsed.user_agent else "Other"
    facts = agent_facts(text)
    device = _device_type(text, parsed)
    if facts.match is not None and facts.match.kind == PROXY:
        # a mailbox image proxy fetching for the recipient (ua-parser calls it a spider)
        return ClientInfo(device, "email_client", facts.match.label)
    if facts.match is not None:
        # Our own label names scanners and previews better than ua-parser does (it calls the
        # iMessage preview "FacebookBot"); for libraries and crawlers its family is finer.
        named = facts.match.source == "curated" and facts.match.kind in (SCANNER, PREVIEW)
        return ClientInfo(device, "bot", facts.match.label if named or family == "Other"
                          else family)
    if facts.empty or facts.bare_mozilla or (parsed.device is not None
                                             and parsed.device.family == "Spider"):
        return ClientInfo(device, "bot", family if family != "Other" else "Unknown")
    return ClientInfo(device, *_client(text, family))


def _client(text: str, family: str) -> tuple[str, str]:
    if family == "Mobile Safari UI/WKWebView" and "(iP" in text:
        # WebKit without a Safari token on an Apple device: Apple Mail's own web view.
        return "email_client", "Apple Mail"
    if family in _EMAIL_CLIENTS:
        return "email_client", family
    if family in _APPS:
        return "app", _NAMES.get(family, family)
    if family == "Other":
        return "unknown", "Unknown"
    return "browser", _NAMES.get(family, family)


def _device_type(text: str, parsed: ua_parser.Result) -> str:
    device = parsed.device.family if parsed.device else ""
    brand = parsed.device.brand if parsed.device else ""
    os_family = parsed.os.family if parsed.os else ""
    if device in ("iPad", "Kindle", "Generic Tablet") or brand == "Generic_Android_Tablet":
        return "tablet"
    if "Tablet" in text or "iPad" in text:
        return "tablet"
    if device in ("iPhone", "iPod", "Generic Smartphone") or "Mobile" in text:
        return "mobile"
    if os_family == "Android":
        # Chrome for Android leaves "Mobile" out on tablets
        # (developer.chrome.com/multidevice/user-agent).
        return "tablet"
    return "desktop"
