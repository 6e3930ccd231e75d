"""Tracking one recipient's copy: every text/html part's links rewritten to signed
tracking links of that copy (DESIGN §4, §5). Fails open: a part that cannot be
rewritten goes out as it came, and the reason is logged."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from relay.config import Config
from relay.honeypot import insert_honeypot
from relay.mime import rewrite_html_parts
from relay.rewrite import Link, rewrite_links
from store.records import LinkRecord
from tracker.config import ProjectConfig, RouteConfig, link_base, tracking_hosts
from tracker.events import HONEYPOT_LINK_INDEX
from tracker.tokens import ClickClaims, mint_token

log = logging.getLogger("clickrelay.tracking")


@dataclass(frozen=True)
class TrackedCopy:
    body: bytes
    links: tuple[LinkRecord, ...]
    failed_parts: int

MAX_LINKS_PER_MESSAGE = 1000
SECONDS_PER_DAY = 86_400


def track_links(
    config: Config,
    project: ProjectConfig,
    route: RouteConfig,
    message_id: str,
    created_at_us: int,
    raw: bytes,
) -> TrackedCopy:
    """The copy with its links rewritten, and the links in message order."""
    key = config.tracking.signing_keys[0]
    base = link_base(config.tracking, project)
    expires = created_at_us // 1_000_000 + config.tracking.token_ttl_days * SECONDS_PER_DAY
    hosts = tracking_hosts(config)
    links: list[LinkRecord] = []
    honeypot = _honeypot_link(base) if route.bot_honeypot else None
    baited: list[bool] = []

    def mint(link: Link) -> str:
        claims = ClickClaims(message_id, link.index, link.destination, project.sid, expires)
        return f"{base}/c/{mint_token(key, claims)}"

    def rewrite(html: str) -> str:
        result = rewrite_links(
            html,
            mint,
            tracking_hosts=hosts,
            first_index=len(links),
            max_links=MAX_LINKS_PER_MESSAGE - len(links),
        )
        # Only a part that was rewritten contributes links: a failed part goes out as it came.
        links.extend(LinkRecord(lk.index, lk.destination, lk.anchor_text) for lk in result.links)
        if honeypot is None:
            return result.html
        with_bait = insert_honeypot(result.html, mint(honeypot))
        baited.append(with_bait is not None)
        return with_bait if with_bait is not None else result.html

    result = rewrite_html_parts(raw, rewrite)
    failed = 0
    for part in result.parts:
        if part.error:
            failed += 1
            log.warning("html part left untracked message_id=%s part=%s reason=%s",
                        message_id, part.path, part.error)
    if honeypot is not None and any(baited):
        links.append(LinkRecord(honeypot.index, honeypot.destination, "", honeypot=True))
    return TrackedCopy(result.raw, tuple(links), failed)


def _honeypot_link(base: str) -> Link:
    """The hidden link (DESIGN §6): it leads to the tracking host's root, where nothing
    is, and its token is minted like any other so that it looks like any other."""
    return Link(HONEYPOT_LINK_INDEX, f"{base}/", "")
