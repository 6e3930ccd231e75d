"""Tracking a mail's links and opens: every text/html part's links rewritten, and its open
pixel put in (relay/rewrite/pixel.py), once for all the recipients, in one pass, with
tokens that each copy fills in (docs/mail.md, docs/opens.md, relay/rewrite/copies.py).
Fails open: a part that cannot be rewritten goes out as it came, and
the caller logs the reason. Runs in a worker process (relay/submission/intake.py): everything it
needs comes in a ``LinkSettings``, and nothing here logs or reads the configuration."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from relay.message.limits import MessageLimits, over_limit
from relay.message.mime import PartOutcome, walk_html_parts
from relay.rewrite.copies import Placeholders, Slot, Template, make_template
from relay.rewrite.honeypot import insert_honeypot
from relay.rewrite.links import Link, TooManyLinks, rewrite_links
from relay.rewrite.pixel import insert_pixel
from store.records import LinkRecord
from tracker.config import SigningKey
from tracker.tokens import ClickClaims, OpenClaims, TokenMinter, mint_open_token, mint_token
from tracker.webhooks.events import HONEYPOT_LINK_INDEX, OPEN_LINK_INDEX

MAX_LINKS_PER_MESSAGE = 1000
SECONDS_PER_DAY = 86_400
# Message ids are UUIDs: every copy's token for a link has the length of this one's.
_SAMPLE_MESSAGE_ID = str(uuid.UUID(int=0))


@dataclass(frozen=True)
class LinkSettings:
    """What minting a mail's links needs, read from the configuration by the caller."""

    key: SigningKey
    base: str  # the project's link base, scheme and host
    sid: str
    expires: int  # Unix seconds
    hosts: tuple[str, ...]  # tracking hosts: links to them are not tracked again
    honeypot: bool
    limits: MessageLimits
    # Destinations never tracked in this mail: its List-Unsubscribe URLs (set per mail).
    untracked: frozenset[str] = frozenset()
    track_clicks: bool = True
    track_opens: bool = False


@dataclass(frozen=True)
class TrackedMessage:
    template: Template
    slots: tuple[Slot, ...]
    links: tuple[LinkRecord, ...]  # in message order, the honeypot's last
    parts: tuple[PartOutcome, ...]


def track_message(settings: LinkSettings, raw: bytes, *, fast: bool = True) -> TrackedMessage:
    """The message with its links rewritten to placeholders, cut into a ``Template``."""
    limits = settings.limits
    placeholders = Placeholders(lambda link: len(mint(settings, _SAMPLE_MESSAGE_ID, link)))
    links: list[LinkRecord] = []
    honeypot = (Link(HONEYPOT_LINK_INDEX, f"{settings.base}/", "")
                if settings.honeypot and settings.track_clicks else None)
    pixel = Link(OPEN_LINK_INDEX, "", "") if settings.track_opens else None
    baited: list[bool] = []
    tags = scanned = 0  # over all the HTML parts, against the limits

    def link_url(link: Link) -> str:
        return f"{settings.base}/c/{placeholders(link)}"

    def rewrite(html: str) -> str:
        nonlocal tags
        tags += html.count("<")
        if tags > limits.max_html_tags:
            raise over_limit("HTML tags", limits.max_html_tags, "max_html_tags")
        if settings.track_clicks:
            html = rewrite_part_links(html)
        if pixel is not None:  # after the links: the pixel is never a tracked link
            html = insert_pixel(html, f"{settings.base}/o/{placeholders(pixel)}")
        return html

    def rewrite_part_links(html: str) -> str:
        nonlocal scanned
        try:
            result = rewrite_links(
                html,
                link_url,
                tracking_hosts=settings.hosts,
                untracked=settings.untracked,
                first_index=len(links),
                max_links=MAX_LINKS_PER_MESSAGE - len(links),
                max_scanned=limits.max_links - scanned,
            )
        except TooManyLinks:
            raise over_limit("links", limits.max_links, "max_links") from None
        scanned += result.scanned
        # Only a part that was rewritten contributes links: a failed part goes out as it came.
        links.extend(LinkRecord(lk.index, lk.destination, lk.anchor_text) for lk in result.links)
        if honeypot is None:
            return result.html
        with_bait = insert_honeypot(result.html, link_url(honeypot))
        baited.append(with_bait is not None)
        return with_bait if with_bait is not None else result.html

    walk = walk_html_parts(raw, rewrite, limits=limits)
    if honeypot is not None and any(baited):
        links.append(LinkRecord(honeypot.index, honeypot.destination, "", honeypot=True))
    template = make_template(raw, walk, placeholders, fast=fast)
    return TrackedMessage(template, tuple(placeholders.slots), tuple(links), walk.parts)


def copy_tokens(
    settings: LinkSettings, tracked: TrackedMessage, message_id: str,
    minter: TokenMinter | None = None,
) -> list[str | None]:
    """One copy's tokens by slot, for the slots its template has holes for; ``minter``
    (with ``settings.key``) makes them faster than ``mint``, and the same."""
    wanted = tracked.template.slots()
    minted: dict[tuple[int, str], str] = {}  # the honeypot of each part is one link
    tokens: list[str | None] = [None] * len(tracked.slots)
    for slot in tracked.slots:
        if slot.number not in wanted:
            continue
        key = (slot.link.index, slot.link.destination)
        if key not in minted:
            minted[key] = mint(settings, message_id, slot.link, minter)
        token = minted[key]
        if len(token) != len(slot.placeholder):
            raise ValueError(f"token of {len(token)} characters for a placeholder of "
                             f"{len(slot.placeholder)}: message ids must be UUIDs")
        tokens[slot.number] = token
    return tokens


def mint(settings: LinkSettings, message_id: str, link: Link,
         minter: TokenMinter | None = None) -> str:
    """A copy's token for a link, or for its open pixel (``OPEN_LINK_INDEX``)."""
    if link.index == OPEN_LINK_INDEX:
        opened = OpenClaims(message_id, settings.sid, settings.expires)
        return (mint_open_token(settings.key, opened) if minter is None
                else minter.mint_open(opened))
    claims = ClickClaims(message_id, link.index, link.destination, settings.sid,
                         settings.expires)
    return mint_token(settings.key, claims) if minter is None else minter.mint(claims)


def copy_body(settings: LinkSettings, tracked: TrackedMessage, message_id: str) -> bytes:
    """One copy made whole (for tests and tools; the spool keeps the pieces)."""
    return tracked.template.copy(tracked.template.fills(copy_tokens(settings, tracked,
                                                                   message_id)))


def failed_parts(parts: Sequence[PartOutcome]) -> list[PartOutcome]:
    return [part for part in parts if part.error]
