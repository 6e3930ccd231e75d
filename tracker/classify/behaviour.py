"""How a client behaved (docs/classification.md, "The context"): the rules that read an
observation's context — the message's other hits (bursts, rapid hits, every link, the
honeypot), the address's fan-out, the time since sending or delivery — weighed against the
evidence of a person in a hurry. Pure, like the rest of the classifier."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator

from tracker.classify.rules import Rules
from tracker.classify.signals import (
    GENERIC_BOT,
    SECURITY_SCANNER,
    US,
    ClickContext,
    Hit,
    Signal,
    stale_browser,
)
from tracker.classify.useragent import AgentFacts, agent_facts, client_info


def context_signals(ctx: ClickContext, facts: AgentFacts, rules: Rules
                     ) -> Iterator[Signal]:
    p = rules.probabilities
    if ctx.honeypot:
        yield Signal("honeypot_hit", ("link_pattern",), p.honeypot_hit, SECURITY_SCANNER)
    elif _near_honeypot(ctx, rules):
        yield Signal("near_honeypot", ("link_pattern",), p.near_honeypot, SECURITY_SCANNER)
    # A person's mail client loads the pixel as the mail opens: a click right after it is
    # no burst. An open, though, is judged with its client's clicks (a gateway fetches the
    # pixel and every link within seconds).
    related = [h for h in ctx.message_hits if _related(h, ctx) and (ctx.opened or not h.opened)]
    yield from _pattern_signals(ctx, facts, related, rules)
    if ctx.fanout_messages >= rules.fanout_min_messages:
        yield Signal("fanout", ("security_network",), p.fanout, SECURITY_SCANNER)
    if ctx.opened:
        yield from _open_timing(ctx, rules)
    elif 0 <= ctx.at_us - ctx.sent_at_us < rules.early_click_s * US:
        # A click seconds after sending is a weak hint only: people do read new mail at once.
        yield Signal("early_click", ("timing",), p.early_click)


def _open_timing(ctx: ClickContext, rules: Rules) -> Iterator[Signal]:
    p = rules.probabilities
    delivered = ctx.delivered_at_us
    if delivered is None or ctx.at_us < delivered:
        # Nobody can open a copy that has not reached the recipient's mailbox.
        yield Signal("open_before_delivery", ("timing",), p.open_before_delivery, GENERIC_BOT)
    elif delivered and ctx.at_us - delivered < rules.early_click_s * US:
        # Seconds after delivery, when gateways and prefetchers fetch: weak, as early_click.
        yield Signal("early_open", ("timing",), p.early_click)


def _pattern_signals(ctx: ClickContext, facts: AgentFacts, related: list[Hit],
                     rules: Rules) -> Iterator[Signal]:
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
        yield (Signal(rule, codes, p.hurried_reader) if hurried
               else Signal(rule, codes, probability, SECURITY_SCANNER))
    if hurried:
        yield Signal("person_in_a_hurry", (), 0)


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
    if facts.empty or facts.bare_mozilla or facts.match is not None or stale_browser(facts, rules):
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
    width = int(width_s * US)
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
    width = rules.all_links_window_s * US
    links = {h.link_index for h in related if h.addr_hash == ctx.addr_hash
             and not h.honeypot and abs(h.at_us - ctx.at_us) <= width}
    if not ctx.honeypot:
        links.add(ctx.link_index)
    return links.issuperset(range(count))


def _near_honeypot(ctx: ClickContext, rules: Rules) -> bool:
    width = rules.honeypot_window_s * US
    return any(h.honeypot and (abs(h.at_us - ctx.at_us) <= width or (
        h.addr_hash == ctx.addr_hash and h.user_agent == ctx.user_agent))
        for h in ctx.message_hits)
