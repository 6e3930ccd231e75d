"""What the classifier works on (docs/classification.md): the classifications, the inputs
(an observation in its context: ``ClickContext`` and the other ``Hit``s of its message) and
the ``Signal``s that the rules of ``tracker.classify.verdict`` and
``tracker.classify.behaviour`` emit. Plain data, no behaviour beyond ``stale_browser``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tracker.classify.rules import Rules
from tracker.classify.useragent import AgentFacts

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
US = 1_000_000


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
class Signal:
    """One rule that fired."""

    rule: str
    categories: tuple[str, ...]
    probability: int
    kind: str | None = None  # the classification this signal points to, if any
    identity: bool = False  # the agent string names the client (more specific than a network)
    proxy_type: str | None = None


def stale_browser(facts: AgentFacts, rules: Rules) -> bool:
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
