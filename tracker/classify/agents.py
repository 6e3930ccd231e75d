"""User-agent knowledge as data: the curated scanner, link-preview, image-proxy, HTTP-library
and headless-browser strings that the classifier looks for, and how the tags of the
crawler-user-agents package map onto our classifications.

Each curated entry is ``(pattern, kind, name, label)``: a case-sensitive regular expression
searched in the User-Agent header, what kind of client it betrays, the rule name recorded with
the verdict, and the client name we report.

``known_agents`` searches them all, together with the crawler-user-agents patterns. Joined into
one regular expression the 1,500 crawler patterns cost ~0.4 ms a search, so they are reached
through a prefilter instead: one trie-shaped expression of a literal that each pattern cannot
match without, tried at every position; only the patterns whose literal occurs are searched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Final, NamedTuple

import crawleruseragents

SCANNER: Final = "scanner"  # link protection / security gateway fetching the link to vet it
PREVIEW: Final = "preview"  # chat or mail app fetching the link to draw a preview card
PROXY: Final = "proxy"  # mailbox image proxy fetching on the recipient's behalf
LIBRARY: Final = "library"  # HTTP library or command-line tool: a script, not a browser
HEADLESS: Final = "headless"  # automated browser
KINDS: Final = (SCANNER, PREVIEW, PROXY, LIBRARY, HEADLESS)


class CuratedAgent(NamedTuple):
    pattern: str
    kind: str
    name: str
    label: str


# Order matters only for display: the first matching entry names the client. Sources are the
# public documents where the string is shown; vendor tokens without a sample of their own come
# from the many published bot lists, and match only when a scanner announces itself (most
# gateways send a browser-like agent and are caught by network and behaviour rules instead).
CURATED_AGENTS: Final[tuple[CuratedAgent, ...]] = (
    # -- security scanners and link protection --------------------------------------------
    # "Barracuda Sentinel (EE)": Braze docs, "Bot filtering" (filtered agents, examples).
    CuratedAgent(r"Barracuda Sentinel", SCANNER, "barracuda_sentinel", "Barracuda Sentinel"),
    CuratedAgent(r"Barracuda", SCANNER, "barracuda", "Barracuda"),
    CuratedAgent(r"Proofpoint|URLDefense", SCANNER, "proofpoint", "Proofpoint"),
    CuratedAgent(r"Mimecast", SCANNER, "mimecast", "Mimecast"),
    CuratedAgent(r"IronPort|Cisco Secure Email", SCANNER, "cisco_ironport", "Cisco IronPort"),
    CuratedAgent(r"Trend ?Micro", SCANNER, "trend_micro", "Trend Micro"),
    CuratedAgent(r"Symantec|Norton Safe Web", SCANNER, "symantec", "Symantec"),
    CuratedAgent(r"Bitdefender", SCANNER, "bitdefender", "Bitdefender"),
    CuratedAgent(r"Sophos", SCANNER, "sophos", "Sophos"),
    CuratedAgent(r"FortiGuard|FortiMail|Fortinet", SCANNER, "fortinet", "Fortinet"),
    CuratedAgent(r"FireEye|Trellix", SCANNER, "trellix", "Trellix"),
    CuratedAgent(r"McAfee", SCANNER, "mcafee", "McAfee"),
    CuratedAgent(r"Kaspersky", SCANNER, "kaspersky", "Kaspersky"),
    CuratedAgent(r"Check ?Point", SCANNER, "check_point", "Check Point"),
    CuratedAgent(r"SonicWall|SonicWALL", SCANNER, "sonicwall", "SonicWall"),
    CuratedAgent(r"Forcepoint|Websense", SCANNER, "forcepoint", "Forcepoint"),
    CuratedAgent(r"Zscaler", SCANNER, "zscaler", "Zscaler"),
    CuratedAgent(r"Avanan", SCANNER, "avanan", "Avanan"),
    # Defender for Office 365 URL detonation and Safe Links time-of-click checks.
    CuratedAgent(r"Microsoft-URLAnalyzer|SafeLinks", SCANNER, "microsoft_safe_links",
                 "Microsoft Safe Links"),
    # Google Safe Browsing's fetcher (crawler-user-agents tags it "search-engine").
    CuratedAgent(r"Google-Safety", SCANNER, "google_safe_browsing", "Google Safe Browsing"),
    # -- link previews ----------------------------------------------------------------------
    # iMessage sends a composite agent that names no Apple product; seen in
    # https://peter.upfold.org.uk/blog/2019/02 (request from the sender's own address).
    CuratedAgent(r"facebookexternalhit/1\.1 Facebot Twitterbot/1\.0", PREVIEW, "imessage",
                 "iMessage"),
    # https://aka.ms/MicrosoftPreview: Outlook and Teams link previews.
    CuratedAgent(r"MicrosoftPreview/", PREVIEW, "microsoft_preview", "Microsoft Preview"),
    # "SkypeUriPreview Preview/0.5": Teams unfurling (opengraphplus.com/consumers/teams).
    CuratedAgent(r"SkypeUriPreview", PREVIEW, "teams", "Microsoft Teams"),
    # Office apps probe a link before handing it to the browser ("existence discovery").
    CuratedAgent(r"Microsoft Office Existence Discovery|ms-office; MSOffice", PREVIEW,
                 "office_link_check", "Microsoft Office"),
    CuratedAgent(r"Slackbot|Slack-ImgProxy", PREVIEW, "slack", "Slack"),  # api.slack.com/robots
    CuratedAgent(r"Discordbot", PREVIEW, "discord", "Discord"),
    CuratedAgent(r"^WhatsApp/", PREVIEW, "whatsapp", "WhatsApp"),
    CuratedAgent(r"TelegramBot", PREVIEW, "telegram", "Telegram"),
    CuratedAgent(r"LinkedInBot", PREVIEW, "linkedin", "LinkedIn"),
    # "GoogleMessages/20": Braze docs, "Bot filtering".
    CuratedAgent(r"GoogleMessages", PREVIEW, "google_messages", "Google Messages"),
    CuratedAgent(r"Snap URL Preview|SnapURLPreview", PREVIEW, "snapchat", "Snapchat"),
    CuratedAgent(r"Yahoo Link Preview", PREVIEW, "yahoo_link_preview", "Yahoo Link Preview"),
    CuratedAgent(r"facebookexternalhit|Facebot|meta-externalfetcher", PREVIEW, "facebook",
                 "Facebook"),
    CuratedAgent(r"Twitterbot", PREVIEW, "twitter", "Twitter"),
    CuratedAgent(r"Viber(?:Url)?", PREVIEW, "viber", "Viber"),
    CuratedAgent(r"Mattermost-Bot|Iframely|Embedly", PREVIEW, "unfurler", "Link unfurler"),
    # -- mailbox image proxies (overrides: crawler-user-agents tags them as bots) -----------
    # "(via ggpht.com GoogleImageProxy)": scientiamobile.com/what-is-google-image-proxy/.
    CuratedAgent(r"GoogleImageProxy", PROXY, "gmail_image_proxy", "Gmail Image Proxy"),
    # Gmail's prefetch of a fresh message, a frozen Chrome 42/Edge 12 agent:
    # bird.com/blog/gmail-prefetching-images (SparkPost).
    CuratedAgent(r"Chrome/42\.0\.2311\.135 Safari/537\.36 Edge/12\.246 Mozilla/5\.0", PROXY,
                 "gmail_prefetch", "Gmail Image Proxy"),
    # help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html
    CuratedAgent(r"YahooMailProxy", PROXY, "yahoo_image_proxy", "Yahoo Mail Proxy"),
    # -- HTTP libraries and tools -------------------------------------------------------------
    CuratedAgent(r"python-requests|python-urllib3|Python-urllib|python-httpx|aiohttp", LIBRARY,
                 "python", "Python HTTP client"),
    CuratedAgent(r"^curl/|^Wget/|^HTTPie/|^lwp-|libwww-perl", LIBRARY, "cli_tool",
                 "Command-line HTTP tool"),
    CuratedAgent(r"^Go-http-client/|^Go [0-9.]+ package http", LIBRARY, "go", "Go HTTP client"),
    CuratedAgent(r"okhttp/|^Java/|Apache-HttpClient|Jakarta Commons-HttpClient|^Dalvik/",
                 LIBRARY, "java", "Java HTTP client"),
    CuratedAgent(r"^axios/|node-fetch|^undici|^got \(|^Node\.js", LIBRARY, "node",
                 "Node.js HTTP client"),
    CuratedAgent(r"^Ruby|Faraday v|^GuzzleHttp/|^PHP/|^RestSharp|^PostmanRuntime/", LIBRARY,
                 "http_library", "HTTP library"),
    # -- headless and automated browsers ------------------------------------------------------
    CuratedAgent(r"HeadlessChrome", HEADLESS, "headless_chrome", "Headless Chrome"),
    CuratedAgent(r"PhantomJS", HEADLESS, "phantomjs", "PhantomJS"),
    CuratedAgent(r"Puppeteer|Playwright|Selenium|SlimerJS|jsdom/", HEADLESS, "automation",
                 "Browser automation"),
)

# crawler-user-agents tags → the kind they betray. Tags not listed are plain crawlers (search
# engines, SEO, monitoring, feed readers, archivers…): generic bots.
CRAWLER_TAG_KINDS: Final[Mapping[str, str]] = MappingProxyType({
    "scanner": SCANNER,
    "social-preview": PREVIEW,
    "http-library": LIBRARY,
    "browser-automation": HEADLESS,
})

# crawler-user-agents patterns that match people's own browsers, so they must not count:
# Meta's in-app browser on Android, an Android build id that real phones carry, and Fluid
# (a single-site browser for the Mac). Found by running the package over real browser agents.
CRAWLER_PATTERNS_IGNORED: Final[frozenset[str]] = frozenset({
    "MetaIAB Facebook",
    r"AP3A\.240617\.008",
    "Fluid",
})


@dataclass(frozen=True)
class AgentMatch:
    """One known agent the header matched: what kind of client it is and its rule name."""

    kind: str  # one of KINDS, or "crawler" for the other crawler-user-agents entries
    name: str
    label: str
    source: str  # "curated" or "crawler:<tag>"
    pattern: str  # the regular expression that matched


# -- the pattern index ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    regex: re.Pattern[str]
    match: AgentMatch


def _anchors(pattern: str) -> list[str] | None:
    """A literal per top-level alternative that any match of ``pattern`` must contain, or
    None when some alternative has none (then the pattern is always searched in full)."""
    found = []
    for branch in _top_level_branches(pattern):
        runs = list(_literal_runs(branch))
        if not runs:
            return None
        found.append(max(runs, key=len))
    return found


def _top_level_branches(pattern: str) -> list[str]:
    branches, depth, start, i = [], 0, 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 1
        elif ch == "[":
            i = _class_end(pattern, i)
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            branches.append(pattern[start:i])
            start = i + 1
        i += 1
    return [*branches, pattern[start:]]


def _literal_runs(branch: str) -> Iterator[str]:
    """Runs of plain characters outside groups; a quantifier makes its character optional."""
    run: list[str] = []
    depth, i = 0, 0
    while i < len(branch):
        ch, literal = branch[i], None
        if ch == "\\":
            nxt = branch[i + 1 : i + 2]
            literal = None if nxt.isalnum() else nxt  # \d, \b … are not literals
            i += 1
        elif ch == "[":
            i = _class_end(branch, i)
        elif ch in "()":
            depth += 1 if ch == "(" else -1
        elif ch in "?*{":
            if run:
                run.pop()
            if ch == "{":
                i = branch.index("}", i)
        elif ch not in "+.^$|":
            literal = ch
        i += 1
        if literal is not None and depth == 0:
            run.append(literal)
            continue
        if run:
            yield "".join(run)
        run = []
    if run:
        yield "".join(run)


def _class_end(pattern: str, i: int) -> int:
    j = i + 1
    if pattern[j : j + 1] == "^":
        j += 1
    if pattern[j : j + 1] == "]":
        j += 1
    while pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    return j


_Trie = dict[str, "_Trie"]


def _trie_pattern(words: Iterable[str]) -> str:
    trie: _Trie = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: _Trie) -> str:
        alts = [re.escape(ch) + build(sub) for ch, sub in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(trie)


class _PatternIndex:
    """Every known pattern, searchable at the cost of one prefilter pass."""

    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = entries
        self._by_anchor: dict[str, list[int]] = {}
        self._always: list[int] = []
        for n, entry in enumerate(entries):
            anchors = _anchors(entry.regex.pattern)
            if anchors is None:
                self._always.append(n)
            for anchor in anchors or ():
                self._by_anchor.setdefault(anchor, []).append(n)
        # A lookahead finds the longest anchor starting at every position; the anchors that
        # are prefixes of it started there too.
        self._prefilter = re.compile(f"(?=({_trie_pattern(self._by_anchor)}))")

    def search(self, user_agent: str) -> list[AgentMatch]:
        candidates = set(self._always)
        for found in {m.group(1) for m in self._prefilter.finditer(user_agent)}:
            for end in range(1, len(found) + 1):
                candidates.update(self._by_anchor.get(found[:end], ()))
        return [self._entries[n].match for n in sorted(candidates)
                if self._entries[n].regex.search(user_agent)]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _crawler_entry(data: dict[str, Any]) -> _Entry | None:
    pattern: str = data["pattern"]
    if pattern in CRAWLER_PATTERNS_IGNORED:
        return None
    tags: list[str] = data.get("tags") or ["crawler"]
    kind = next((CRAWLER_TAG_KINDS[t] for t in tags if t in CRAWLER_TAG_KINDS), "crawler")
    label = max(_anchors(pattern) or [pattern], key=len).strip(" /;(")
    match = AgentMatch(kind, _slug(label), label, f"crawler:{tags[0]}", pattern)
    return _Entry(re.compile(pattern), match)


# Memoisation of a pure function, not state: the index of fixed tables, built once.
@lru_cache(maxsize=1)
def _index() -> _PatternIndex:
    curated = [_Entry(re.compile(a.pattern),
                      AgentMatch(a.kind, a.name, a.label, "curated", a.pattern))
               for a in CURATED_AGENTS]
    crawlers = [e for d in crawleruseragents.CRAWLER_USER_AGENTS_DATA
                if (e := _crawler_entry(d)) is not None]
    return _PatternIndex(curated + crawlers)


def known_agents(user_agent: str) -> list[AgentMatch]:
    """Every curated and crawler-user-agents entry the header matches, curated ones first."""
    return _index().search(user_agent)
