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

from collections.abc import Iterator, Mapping
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
from tracker.classify.behaviour import context_signals
from tracker.classify.rules import DEFAULT_RULES, Probabilities, Rules
from tracker.classify.signals import (
    CLASSIFICATIONS,
    GENERIC_BOT,
    GENUINE,
    LINK_PREVIEW,
    MACHINE_THRESHOLD,
    PRIVACY_PROXY,
    REASON_CODES,
    SECURITY_SCANNER,
    ClickContext,
    Hit,
    Signal,
    stale_browser,
)
from tracker.classify.useragent import AgentFacts, agent_facts, client_info

# The classifier's inputs and vocabulary, for its callers (tracker.classify.signals).
__all__ = ["CLASSIFICATIONS", "GENERIC_BOT", "GENUINE", "LINK_PREVIEW", "PRIVACY_PROXY",
           "REASON_CODES", "SECURITY_SCANNER", "ClickContext", "Hit", "Verdict", "classify"]

# Apple Mail Privacy Protection's fetchers: this network label (shipped with Apple's
# 17.0.0.0/8, tracker/clicks/networks.toml) and exactly this agent (docs/opens.md).
APPLE_MPP = "apple_mpp"
APPLE_MPP_AGENT = "Mozilla/5.0"
# A mailbox image proxy's own network: its opens come from there by design.
_PROXY_HOME: Final[Mapping[str, str]] = MappingProxyType(
    {"gmail_image_proxy": "google", "gmail_prefetch": "google"})


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
        *context_signals(ctx, facts, rules),
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


def _agent_signals(facts: AgentFacts, rules: Rules) -> Iterator[Signal]:
    p = rules.probabilities
    if facts.empty:
        yield Signal("empty_user_agent", ("request_shape",), p.empty_user_agent, GENERIC_BOT)
    elif facts.bare_mozilla:
        yield Signal("bare_mozilla_agent", ("request_shape",), p.bare_mozilla_agent,
                      GENERIC_BOT)
    if facts.match is not None:
        yield _match_signal(facts.match, p)
    if stale_browser(facts, rules):
        yield Signal(f"stale_browser:{facts.browser}_{facts.browser_major}", ("sandbox",),
                      p.stale_browser)


def _open_agent_signals(ctx: ClickContext, facts: AgentFacts, rules: Rules
                        ) -> Iterator[Signal]:
    """Who fetched a pixel. Apple's MPP fetches every image at delivery: no person. A
    mailbox image proxy fetches it when the person views the mail (Gmail, Yahoo with less
    certainty), except Gmail's prefetch of a fresh message."""
    p = rules.probabilities
    if ctx.network == APPLE_MPP and ctx.user_agent == APPLE_MPP_AGENT:
        yield Signal("apple_mpp", ("privacy_proxy", "image_proxy"), p.apple_mpp,
                      PRIVACY_PROXY, identity=True, proxy_type="apple_mpp")
        return
    match = facts.match
    if match is None or match.kind != PROXY:
        yield from _agent_signals(facts, rules)
        return
    probability = {"gmail_prefetch": p.gmail_prefetch,
                   "yahoo_image_proxy": p.yahoo_proxy_open}.get(match.name, p.image_proxy_open)
    yield Signal(f"image_proxy_agent:{match.name}", ("privacy_proxy", "image_proxy"),
                  probability, PRIVACY_PROXY, identity=True, proxy_type=match.name)
    home = _PROXY_HOME.get(match.name)
    if home is not None and ctx.network != home:
        # Gmail's fetchers come from Google's own network: the agent alone is easy to wear.
        yield Signal(f"proxy_off_network:{match.name}", ("other",), p.proxy_off_network)


def _match_signal(match: AgentMatch, p: Probabilities) -> Signal:
    field, codes, kind = _AGENT_KINDS.get(match.kind, _CRAWLER)
    if match.source != "curated" and match.kind != PROXY:
        # crawler-user-agents entries are crawlers of all sorts, not link protection as such
        codes = ("known_bot",)
    proxy_type = match.name if match.kind == PROXY else None
    return Signal(f"{field}:{match.name}", codes, getattr(p, field), kind, identity=True,
                   proxy_type=proxy_type)


# -- how it asked: method and headers -------------------------------------------------------------


def _request_signals(ctx: ClickContext, facts: AgentFacts, rules: Rules) -> Iterator[Signal]:
    p = rules.probabilities
    headers = {name.lower(): value for name, value in ctx.headers.items()}
    if ctx.method.upper() == "HEAD":
        # People navigate with GET; link checkers and gateways probe with HEAD.
        yield Signal("head_request", ("request_shape",), p.head_request, SECURITY_SCANNER)
    purpose = f"{headers.get('purpose', '')} {headers.get('sec-purpose', '')}".lower()
    if "prefetch" in purpose:
        yield Signal("prefetch_request", ("request_shape",), p.prefetch_request, LINK_PREVIEW)
    yield from _missing_browser_headers(ctx.user_agent, headers, facts, p)


def _missing_browser_headers(user_agent: str, headers: Mapping[str, str], facts: AgentFacts,
                             p: Probabilities) -> Iterator[Signal]:
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
        yield Signal("missing_accept_language", ("request_shape",), p.missing_accept_language)
    if no_fetch:
        yield Signal("missing_fetch_metadata", ("request_shape",), p.missing_fetch_metadata)


def _sends_fetch_metadata(facts: AgentFacts) -> bool:
    major = facts.browser_major or 0
    return (facts.browser == "chrome" and major >= 80) or (
        facts.browser == "firefox" and major >= 90)


# -- where it came from: the network label --------------------------------------------------------


def _network_signals(label: str | None, rules: Rules, home: str | None = None
                     ) -> Iterator[Signal]:
    """``home``: the network of the image proxy that fetched a pixel, expected there."""
    if not label or label == home:
        return
    prefix, _, rest = label.partition(":")
    kind, name = (prefix, rest) if rest else ("", label)
    p = rules.probabilities
    if kind == "scanner" or label in rules.scanner_networks:
        yield Signal(f"scanner_network:{name}", ("security_network",), p.scanner_network,
                      SECURITY_SCANNER)
    elif kind == "cloud" or label in rules.cloud_networks:
        yield Signal(f"cloud_network:{name}", ("other",), p.cloud_network, GENERIC_BOT)
    elif kind == "proxy" or label in rules.proxy_networks:
        yield Signal(f"proxy_network:{name}", ("privacy_proxy",), p.proxy_network,
                      PRIVACY_PROXY, proxy_type=name)


# -- the verdict ----------------------------------------------------------------------------------


def _verdict(signals: list[Signal], rules: Rules) -> Verdict:
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


def _classification(signals: list[Signal], machine: bool, proxy_type: str | None) -> str:
    """Below the threshold a click is a person's, through a privacy proxy or not. Above it, a
    known agent string names the client (a network hosts several services: Google's serves
    both its image proxy and its link scanning); else the strongest network or behaviour
    signal does."""
    if not machine:
        return PRIVACY_PROXY if proxy_type else GENUINE
    pointing = [s for s in signals if s.kind and s.probability > 0]
    best = max(pointing, key=lambda s: (s.identity, s.probability), default=None)
    return best.kind if best is not None and best.kind else GENERIC_BOT
