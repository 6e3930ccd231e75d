"""Click and open classification (docs/classification.md, docs/opens.md): a pure function
from one stored observation and its context (the other hits of the same message, the
address's fan-out, the send and delivery times) to a ``Verdict`` — genuine, privacy proxy,
security scanner, link preview or generic bot.

No I/O, no clock and no configuration object inside: thresholds and probabilities come
in as ``tracker.classify.rules.Rules``, and the context is whatever the promotion worker
read from the store after the settle window. Each signal that fires carries a rule name
(kept with the event), its broad Lettermint reason code, a probability, and — when it says
who made the request — the classification it points to.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from tracker.classify.agents import (
    HEADLESS,
    LIBRARY,
    PREVIEW,
    PROXY,
    SCANNER,
    AgentMatch,
)
from tracker.classify.rules import DEFAULT_RULES, Probabilities, Rules
from tracker.classify.useragent import AgentFacts, agent_facts, client_info

GENUINE = "genuine"
PRIVACY_PROXY = "privacy_proxy"
SECURITY_SCANNER = "security_scanner"
LINK_PREVIEW = "link_preview"
GENERIC_BOT = "generic_bot"
CLASSIFICATIONS = (GENUINE, PRIVACY_PROXY, SECURITY_SCANNER, LINK_PREVIEW, GENERIC_BOT)

# Lettermint's broad categories, in the order verdicts list them.
REASON_CODES = ("privacy_proxy", "image_proxy", "link_protection", "known_bot",
                "security_network", "timing", "link_pattern", "request_shape", "sandbox",
                "other")

MACHINE_THRESHOLD = 50  # docs/classification.md: machine ⇔ probability ≥ 50
_US = 1_000_000
# Apple Mail Privacy Protection's fetchers: this network label (shipped with Apple's
# 17.0.0.0/8, tracker/clicks/networks.toml) and exactly this agent (docs/opens.md).
APPLE_MPP = "apple_mpp"
APPLE_MPP_AGENT = "Mozilla/5.0"
# A mailbox image proxy's own network: its opens come from there by design.
_PROXY_HOME: Final[Mapping[str, str]] = MappingProxyType(
    {"gmail_image_proxy": "google", "gmail_prefetch": "google"})


@dataclass(frozen=True)
class Hit:
    """Another observation of the same message (context)."""

    at_us: int  # UTC microseconds since epoch
    link_index: int
    addr_hash: str
    user_agent: str
    honeypot: bool
    opened: bool = False  # an open (a request for the copy's pixel), not a click


@dataclass(frozen=True)
class ClickContext:
    method: str  # "GET" | "HEAD"
    user_agent: str
    headers: Mapping[str, str]  # lower-case names: accept, accept-language, sec-fetch-*, …
    network: str | None  # network label of the client address, or None
    addr_hash: str
    at_us: int
    sent_at_us: int  # when the message was accepted
    link_index: int
    honeypot: bool  # this hit is on the hidden honeypot link
    message_hits: Sequence[Hit]  # all OTHER observations of the message, before and after
    message_link_count: int  # tracked links of the message, honeypot excluded
    fanout_messages: int  # distinct messages this addr_hash hit in the fan-out window
    opened: bool = False  # this observation is an open, not a click
    delivered_at_us: int | None = 0  # when the copy was delivered upstream; None: not yet


@dataclass(frozen=True)
class Verdict:
    classification: str
    proxy_type: str | None
    probability: int
    detected: bool
    machine: bool
    counts_for_metrics: bool
    reason_codes: tuple[str, ...]  # broad categories, ordered, no duplicates
    rules: tuple[str, ...]  # finer rule names that fired
    rules_version: str


@dataclass(frozen=True)
class _Signal:
    rule: str
    categories: tuple[str, ...]
    probability: int
    kind: str | None = None  # the classification this signal points to, if any
    identity: bool = False  # the agent string names the client (more specific than a network)
    proxy_type: str | None = None


def classify(ctx: ClickContext, rules: Rules = DEFAULT_RULES) -> Verdict:
    """Classify one click (or open) observation in its context."""
    facts = agent_facts(ctx.user_agent)
    agent = list(_open_agent_signals(ctx, facts, rules) if ctx.opened
                 else _agent_signals(facts, rules))
    home = next((_PROXY_HOME.get(s.proxy_type or "") for s in agent if ctx.opened), None)
    signals = [
        *agent,
        *_request_signals(ctx, facts, rules),
        *_network_signals(ctx.network, rules, home),
        *_context_signals(ctx, facts, rules),
    ]
    return _verdict(signals, rules)


# -- who made the request: the agent --------------------------------------------------------------

# agent kind → (probability field, also the rule prefix; reason codes; classification)
_AGENT_KINDS: Final[Mapping[str, tuple[str, tuple[str, ...], str]]] = MappingProxyType({
    SCANNER: ("scanner_agent", ("link_protection",), SECURITY_SCANNER),
    PREVIEW: ("preview_agent", ("known_bot",), LINK_PREVIEW),
    PROXY: ("image_proxy_agent", ("privacy_proxy", "image_proxy"), PRIVACY_PROXY),
    LIBRARY: ("http_library", ("known_bot",), GENERIC_BOT),
    HEADLESS: ("headless_browser", ("sandbox",), GENERIC_BOT),
})
_CRAWLER = ("crawler_agent", ("known_bot",), GENERIC_BOT)


def _agent_signals(facts: AgentFacts, rules: Rules) -> Iterator[_Signal]:
    p = rules.probabilities
    if facts.empty:
        yield _Signal("empty_user_agent", ("request_shape",), p.empty_user_agent, GENERIC_BOT)
    elif facts.bare_mozilla:
        yield _Signal("bare_mozilla_agent", ("request_shape",), p.bare_mozilla_agent,
                      GENERIC_BOT)
    if facts.match is not None:
        yield _match_signal(facts.match, p)
    if _stale(facts, rules):
        yield _Signal(f"stale_browser:{facts.browser}_{facts.browser_major}", ("sandbox",),
                      p.stale_browser)


def _open_agent_signals(ctx: ClickContext, facts: AgentFacts, rules: Rules
                        ) -> Iterator[_Signal]:
    """Who fetched a pixel. Apple's MPP fetches every image at delivery: no person. A
    mailbox image proxy fetches it when the person views the mail (Gmail, Yahoo with less
    certainty), except Gmail's prefetch of a fresh message."""
    p = rules.probabilities
    if ctx.network == APPLE_MPP and ctx.user_agent == APPLE_MPP_AGENT:
        yield _Signal("apple_mpp", ("privacy_proxy", "image_proxy"), p.apple_mpp,
                      PRIVACY_PROXY, identity=True, proxy_type="apple_mpp")
        return
    match = facts.match
    if match is None or match.kind != PROXY:
        yield from _agent_signals(facts, rules)
        return
    probability = {"gmail_prefetch": p.gmail_prefetch,
                   "yahoo_image_proxy": p.yahoo_proxy_open}.get(match.name, p.image_proxy_open)
    yield _Signal(f"image_proxy_agent:{match.name}", ("privacy_proxy", "image_proxy"),
                  probability, PRIVACY_PROXY, identity=True, proxy_type=match.name)
    home = _PROXY_HOME.get(match.name)
    if home is not None and ctx.network != home:
        # Gmail's fetchers come from Google's own network: the agent alone is easy to wear.
        yield _Signal(f"proxy_off_network:{match.name}", ("other",), p.proxy_off_network)


def _match_signal(match: AgentMatch, p: Probabilities) -> _Signal:
    field, codes, kind = _AGENT_KINDS.get(match.kind, _CRAWLER)
    if match.source != "curated" and match.kind != PROXY:
        # crawler-user-agents entries are crawlers of all sorts, not link protection as such
        codes = ("known_bot",)
    proxy_type = match.name if match.kind == PROXY else None
    return _Signal(f"{field}:{match.name}", codes, getattr(p, field), kind, identity=True,
                   proxy_type=proxy_type)


def _stale(facts: AgentFacts, rules: Rules) -> bool:
    """A browser far older than supported ones; only telling when the agent is otherwise
    unknown (an image proxy's frozen agent string says nothing about sandboxes)."""
    major = facts.browser_major
    if facts.match is not None:
        return False
    if facts.browser == "msie":
        return True  # retired in 2022; sandboxes and old scanners still send it
    if facts.browser == "chrome" and major is not None:
        return major < rules.stale_chrome_major
    return facts.browser == "firefox" and major is not None and major < rules.stale_firefox_major


# -- how it asked: method and headers -------------------------------------------------------------


def _request_signals(ctx: ClickContext, facts: AgentFacts, rules: Rules) -> Iterator[_Signal]:
    p = rules.probabilities
    headers = {name.lower(): value for name, value in ctx.headers.items()}
    if ctx.method.upper() == "HEAD":
        # People navigate with GET; link checkers and gateways probe with HEAD.
        yield _Signal("head_request", ("request_shape",), p.head_request, SECURITY_SCANNER)
    purpose = f"{headers.get('purpose', '')} {headers.get('sec-purpose', '')}".lower()
    if "prefetch" in purpose:
        yield _Signal("prefetch_request", ("request_shape",), p.prefetch_request, LINK_PREVIEW)
    yield from _missing_browser_headers(ctx.user_agent, headers, facts, p)


def _missing_browser_headers(user_agent: str, headers: Mapping[str, str], facts: AgentFacts,
                             p: Probabilities) -> Iterator[_Signal]:
    """An agent that claims to be a browser but lacks the headers that browser always sends:
    Accept-Language, and Sec-Fetch-* from Chrome 80 / Firefox 90 on (MDN browser-compat data)
    — the shape of a script or sandbox wearing a browser's agent string."""
    if facts.match is not None or facts.browser is None:
        return
    no_language = not headers.get("accept-language", "").strip()
    no_fetch = _sends_fetch_metadata(facts) and not any(n.startswith("sec-fetch-")
                                                        for n in headers)
    # In-app web views may differ; only a real browser's omissions count.
    if not (no_language or no_fetch) or client_info(user_agent).client_type != "browser":
        return
    if no_language:
        yield _Signal("missing_accept_language", ("request_shape",), p.missing_accept_language)
    if no_fetch:
        yield _Signal("missing_fetch_metadata", ("request_shape",), p.missing_fetch_metadata)


def _sends_fetch_metadata(facts: AgentFacts) -> bool:
    major = facts.browser_major or 0
    return (facts.browser == "chrome" and major >= 80) or (
        facts.browser == "firefox" and major >= 90)


# -- where it came from: the network label --------------------------------------------------------


def _network_signals(label: str | None, rules: Rules, home: str | None = None
                     ) -> Iterator[_Signal]:
    """``home``: the network of the image proxy that fetched a pixel, expected there."""
    if not label or label == home:
        return
    prefix, _, rest = label.partition(":")
    kind, name = (prefix, rest) if rest else ("", label)
    p = rules.probabilities
    if kind == "scanner" or label in rules.scanner_networks:
        yield _Signal(f"scanner_network:{name}", ("security_network",), p.scanner_network,
                      SECURITY_SCANNER)
    elif kind == "cloud" or label in rules.cloud_networks:
        yield _Signal(f"cloud_network:{name}", ("other",), p.cloud_network, GENERIC_BOT)
    elif kind == "proxy" or label in rules.proxy_networks:
        yield _Signal(f"proxy_network:{name}", ("privacy_proxy",), p.proxy_network,
                      PRIVACY_PROXY, proxy_type=name)


# -- how it behaved: the message's other hits, fan-out and timing ---------------------------------


def _context_signals(ctx: ClickContext, facts: AgentFacts, rules: Rules
                     ) -> Iterator[_Signal]:
    p = rules.probabilities
    if ctx.honeypot:
        yield _Signal("honeypot_hit", ("link_pattern",), p.honeypot_hit, SECURITY_SCANNER)
    elif _near_honeypot(ctx, rules):
        yield _Signal("near_honeypot", ("link_pattern",), p.near_honeypot, SECURITY_SCANNER)
    # A person's mail client loads the pixel as the mail opens: a click right after it is
    # no burst. An open, though, is judged with its client's clicks (a gateway fetches the
    # pixel and every link within seconds).
    related = [h for h in ctx.message_hits if _related(h, ctx) and (ctx.opened or not h.opened)]
    yield from _pattern_signals(ctx, facts, related, rules)
    if ctx.fanout_messages >= rules.fanout_min_messages:
        yield _Signal("fanout", ("security_network",), p.fanout, SECURITY_SCANNER)
    if ctx.opened:
        yield from _open_timing(ctx, rules)
    elif 0 <= ctx.at_us - ctx.sent_at_us < rules.early_click_s * _US:
        # A click seconds after sending is a weak hint only: people do read new mail at once.
        yield _Signal("early_click", ("timing",), p.early_click)


def _open_timing(ctx: ClickContext, rules: Rules) -> Iterator[_Signal]:
    p = rules.probabilities
    delivered = ctx.delivered_at_us
    if delivered is None or ctx.at_us < delivered:
        # Nobody can open a copy that has not reached the recipient's mailbox.
        yield _Signal("open_before_delivery", ("timing",), p.open_before_delivery, GENERIC_BOT)
    elif delivered and ctx.at_us - delivered < rules.early_click_s * _US:
        # Seconds after delivery, when gateways and prefetchers fetch: weak, as early_click.
        yield _Signal("early_open", ("timing",), p.early_click)


def _pattern_signals(ctx: ClickContext, facts: AgentFacts, related: list[Hit],
                     rules: Rules) -> Iterator[_Signal]:
    """Bursts, rapid hits and every link hit; weighed against the evidence of a person in
    a hurry (``_person_evidence``), whose bursts are weak evidence only."""
    p = rules.probabilities
    points = sorted([(h.at_us, (h.honeypot, h.link_index)) for h in related]
                    + [(ctx.at_us, (ctx.honeypot, ctx.link_index))])
    fired = []
    if any(len({key for _, key in w}) >= rules.burst_min_links
           for w in _windows(points, ctx.at_us, rules.burst_window_s)):
        fired.append(("burst", ("timing",), p.burst))
    if any(len(w) > rules.rapid_max_hits
           for w in _windows(points, ctx.at_us, rules.rapid_window_s)):
        fired.append(("rapid_hits", ("timing",), p.rapid_hits))
    hurried = bool(fired) and _person_evidence(ctx, facts, related, rules)
    if _all_links(related, ctx, rules):
        fired.append(("all_links", ("link_pattern",), p.all_links))
    for rule, codes, probability in fired:
        yield (_Signal(rule, codes, p.hurried_reader) if hurried
               else _Signal(rule, codes, probability, SECURITY_SCANNER))
    if hurried:
        yield _Signal("person_in_a_hurry", (), 0)


def _person_evidence(ctx: ClickContext, facts: AgentFacts, related: list[Hit],
                     rules: Rules) -> bool:
    """A person at their own device: a current browser (for an open, a browser or mail
    client) that says its language, from no gateway or cloud network, the same client in
    every hit around, and for a click a navigation the person started (``Sec-Fetch-User:
    ?1``, mode ``navigate``: sent only on user activation, Fetch Metadata §2.4). Security
    gateways' bursts have none of this together."""
    headers = {name.lower(): value for name, value in ctx.headers.items()}
    if ctx.method.upper() != "GET" or not headers.get("accept-language", "").strip():
        return False
    if facts.empty or facts.bare_mozilla or facts.match is not None or _stale(facts, rules):
        return False
    if ctx.opened:
        if client_info(ctx.user_agent).client_type not in ("browser", "email_client"):
            return False
    elif (facts.browser is None or headers.get("sec-fetch-user") != "?1"
          or headers.get("sec-fetch-mode") != "navigate"):
        return False
    prefix, _, rest = (ctx.network or "").partition(":")
    if ctx.network and not (rest and prefix == "proxy") and ctx.network not in rules.proxy_networks:
        return False
    return all(h.addr_hash == ctx.addr_hash and h.user_agent == ctx.user_agent
               for h in related)


def _related(hit: Hit, ctx: ClickContext) -> bool:
    """Whether another hit is the same client as this one, for bursts and link patterns.

    A scanner fleet shares one agent string across addresses; one address may be shared by a
    scanner and a person (NAT, Outlook's own link check before the browser opens), so hits of
    the same address count only when both agents are identified bots or both are not. A
    person's browser after a burst is thus not blamed for the scanner's hits."""
    if hit.user_agent == ctx.user_agent:
        return True
    return hit.addr_hash == ctx.addr_hash and _known_bot(hit.user_agent) == _known_bot(
        ctx.user_agent)


def _known_bot(user_agent: str) -> bool:
    facts = agent_facts(user_agent)
    return facts.empty or facts.bare_mozilla or facts.match is not None


def _windows(points: list[tuple[int, tuple[bool, int]]], at_us: int,
             width_s: float) -> Iterator[list[tuple[int, tuple[bool, int]]]]:
    """Each window [start, start + width] that starts at a point and contains ``at_us``."""
    width = int(width_s * _US)
    times = [t for t, _ in points]
    for i in range(bisect_left(times, at_us - width), bisect_right(times, at_us)):
        yield points[i:bisect_right(times, times[i] + width)]


def _all_links(related: Iterable[Hit], ctx: ClickContext, rules: Rules) -> bool:
    """Every tracked link hit from this address. Unlike bursts, this spans up to a minute,
    so an agent string shared with a scanner elsewhere (reduced Chrome agents are alike) does
    not make a later person's click part of the scanner's sweep."""
    count = ctx.message_link_count
    if count < rules.all_links_min_links:
        return False
    width = rules.all_links_window_s * _US
    links = {h.link_index for h in related if h.addr_hash == ctx.addr_hash
             and not h.honeypot and abs(h.at_us - ctx.at_us) <= width}
    if not ctx.honeypot:
        links.add(ctx.link_index)
    return links.issuperset(range(count))


def _near_honeypot(ctx: ClickContext, rules: Rules) -> bool:
    width = rules.honeypot_window_s * _US
    return any(h.honeypot and (abs(h.at_us - ctx.at_us) <= width or (
        h.addr_hash == ctx.addr_hash and h.user_agent == ctx.user_agent))
        for h in ctx.message_hits)


# -- the verdict ----------------------------------------------------------------------------------


def _verdict(signals: list[_Signal], rules: Rules) -> Verdict:
    human = 1.0
    for signal in signals:
        human *= 1 - signal.probability / 100
    probability = min(100, max(0, round(100 * (1 - human))))
    machine = probability >= MACHINE_THRESHOLD
    proxy_type = next((s.proxy_type for s in signals if s.proxy_type), None)
    categories = {c for s in signals for c in s.categories}
    return Verdict(
        classification=_classification(signals, machine, proxy_type),
        proxy_type=proxy_type,
        probability=probability,
        detected=machine,
        machine=machine,
        counts_for_metrics=not machine,
        reason_codes=tuple(c for c in REASON_CODES if c in categories),
        rules=tuple(dict.fromkeys(s.rule for s in signals)),
        rules_version=rules.version,
    )


def _classification(signals: list[_Signal], machine: bool, proxy_type: str | None) -> str:
    """Below the threshold a click is a person's, through a privacy proxy or not. Above it, a
    known agent string names the client (a network hosts several services: Google's serves
    both its image proxy and its link scanning); else the strongest network or behaviour
    signal does."""
    if not machine:
        return PRIVACY_PROXY if proxy_type else GENUINE
    pointing = [s for s in signals if s.kind and s.probability > 0]
    best = max(pointing, key=lambda s: (s.identity, s.probability), default=None)
    return best.kind if best is not None and best.kind else GENERIC_BOT
