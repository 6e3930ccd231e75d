"""The HTML link rewriter: one document in, the same document with tracked hrefs out.

A pure function (docs/mail.md): HTML text and a link-minting callable in,
rewritten text and the ordered links out; no I/O, clock or configuration. lexbor
(selectolax) decides what is a link; ``relay.rewrite.scan`` locates each candidate
``href`` value in the original text, and only those values are replaced, so everything
else (doctype, comments, entities, quoting, whitespace) leaves byte for byte.

How the two are kept in step: every link-shaped start tag found in the text gets a
marker attribute, right after its name, in a copy of the document that only lexbor
reads. An element lexbor built from that tag carries the marker as its first attribute
(clones made by the adoption agency carry it too); a tag that lexbor read as text, a
comment or an attribute value yields no such element. A link is rewritten only when
lexbor's tag name and href value agree with the scanned span.

Outlook conditional comments (``<!--[if mso]> … <![endif]-->``) are comments to lexbor.
When tags inside them are left over, a second parse of the same copy with those
comments opened, as Outlook reads them, finds their VML buttons and links.
"""

from __future__ import annotations

import bisect
import re
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser, LexborNode

from relay.rewrite.policy import (
    browser_destination,
    normalise_hosts,
    opted_out,
    skip_reason,
)
from relay.rewrite.scan import (
    HrefTag,
    TooManyLinks,
    conditional_regions,
    decode_attribute,
    find_href_tags,
    needs_decoding,
)

ANCHOR_TEXT_LIMIT = 500
_MARKER = "data-clickrelay-ix"
_UNQUOTED_UNSAFE = re.compile("[\t\n\f\r \"'<>=`]")
# Elements after which visible text breaks, so "Read<br>more" is not "Readmore".
_BREAKS = frozenset(
    {"br", "p", "div", "td", "th", "tr", "li", "dt", "dd", "table", "center", "blockquote"}
    | {"h1", "h2", "h3", "h4", "h5", "h6"}
)
# Bounds the anchor-text walk: links can nest (VML shapes), and each walk must not
# cost the size of the whole document.
_WALK_NODES = 2000
_WALK_CHARS = 8 * ANCHOR_TEXT_LIMIT


@dataclass(frozen=True)
class Link:
    index: int  # position in document order, starting at first_index
    destination: str  # as a browser would follow it; not yet ASCII
    anchor_text: str


@dataclass(frozen=True)
class RewriteResult:
    html: str
    links: tuple[Link, ...]
    scanned: int = 0  # link tags found in the text, tracked or not


Mint = Callable[[Link], str]
__all__ = ["Candidate", "Link", "Mint", "RewriteResult", "TooManyLinks", "find_links",
           "rewrite_links"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A link element lexbor found, located in the original text."""

    tag: HrefTag
    destination: str
    nodes: tuple[LexborNode, ...]  # the element and any clones of it, in tree order
    opted_out: bool


def rewrite_links(
    html: str,
    mint: Mint,
    *,
    tracking_hosts: Collection[str] = (),
    untracked: Collection[str] = (),
    first_index: int = 0,
    max_links: int = 1000,
    max_scanned: int | None = None,
) -> RewriteResult:
    """Replace the href of every trackable link by ``mint(link)``; at most ``max_links``
    links are tracked, the rest are left as they are; destinations in ``untracked`` never
    are. A text with more than ``max_scanned`` link tags is not parsed: ``TooManyLinks``."""
    hosts = normalise_hosts(tracking_hosts)

    def trackable(destination: str) -> bool:
        return skip_reason(destination, hosts, untracked) is None

    links: list[Link] = []
    edits: list[tuple[int, int, str]] = []
    tags = find_href_tags(html, http_only=True, limit=max_scanned)
    for candidate in _links_of_tags(html, tags, trackable):
        if len(links) >= max_links:
            break
        if candidate.opted_out or not trackable(candidate.destination):
            continue
        link = Link(first_index + len(links), candidate.destination, _anchor_text(candidate))
        tag = candidate.tag
        edits.append((tag.value_start, tag.value_end, _attribute_text(mint(link), tag.quote)))
        links.append(link)
    return RewriteResult(_splice(html, edits), tuple(links), len(tags))


def find_links(
    html: str, *, wanted: Callable[[str], bool] | None = None, limit: int | None = None
) -> list[Candidate]:
    """Every ``<a>``, ``<area>`` and VML element with an href that lexbor builds from
    ``html``, also inside Outlook conditional comments, in document order.

    ``wanted`` may rule out destinations early: a tag whose raw href needs no decoding and
    whose destination is not wanted is not handed to lexbor at all. More than ``limit``
    link tags raise ``TooManyLinks`` before lexbor parses anything."""
    return _links_of_tags(html, find_href_tags(html, http_only=wanted is not None, limit=limit),
                          wanted)


def _links_of_tags(
    html: str, tags: list[HrefTag], wanted: Callable[[str], bool] | None
) -> list[Candidate]:
    if wanted is not None:
        tags = [tag for tag in tags if _may_be_wanted(html, tag, wanted)]
    if not tags:
        return []
    found = _confirmed(html, tags, LexborHTMLParser(_with_markers(html, tags)), None)
    if len(found) == len(tags):
        return [found[key] for key in sorted(found)]
    regions = conditional_regions(html)
    merged = _merged(regions)
    hidden = {key for key, tag in enumerate(tags) if key not in found and _inside(tag, merged)}
    if hidden:
        # Outlook reads a conditional comment's content as markup: so does this second
        # parse, in which only those comments are opened. Its elements count only for
        # tags the first parse did not see as elements.
        revealed = _with_markers(_revealed(html, [start for start, _ in regions]), tags)
        found.update(_confirmed(html, tags, LexborHTMLParser(revealed), hidden))
    return [found[key] for key in sorted(found)]


def _may_be_wanted(html: str, tag: HrefTag, wanted: Callable[[str], bool]) -> bool:
    raw = html[tag.value_start : tag.value_end]
    return needs_decoding(raw) or wanted(browser_destination(raw))


def _confirmed(
    text: str, tags: list[HrefTag], tree: LexborHTMLParser, keys: set[int] | None
) -> dict[int, Candidate]:
    """The marked tags that lexbor turned into elements, checked against the scan: our
    marker is the element's first attribute (so the element's tag starts where the scan
    found it) and lexbor's tag name and href value are the scanned ones."""
    nodes: dict[int, list[LexborNode]] = {}
    attributes: dict[int, dict[str, str | None]] = {}
    for node in tree.css(f"[{_MARKER}]"):
        attrs = node.attributes
        name, value = next(iter(attrs.items()))
        if name != _MARKER or not value or not (value.isascii() and value.isdigit()):
            continue
        key = int(value)
        if key >= len(tags) or (keys is not None and key not in keys):
            continue
        tag = tags[key]
        href = attrs.get("href")
        if node.tag != tag.name or href is None:
            continue
        if href != decode_attribute(text[tag.value_start : tag.value_end]):
            continue
        nodes.setdefault(key, []).append(node)
        attributes.setdefault(key, attrs)
    return {
        key: Candidate(
            tags[key],
            browser_destination(attributes[key]["href"] or ""),
            tuple(group),
            opted_out(attributes[key]),
        )
        for key, group in nodes.items()
    }


def _with_markers(text: str, tags: list[HrefTag]) -> str:
    # Right after the tag name, so ours is the first attribute and wins over any
    # duplicate. The marker holds no quote, "<", ">" or "--": where lexbor does not see
    # a tag (comment, script, attribute value) it stays inert text.
    pieces = []
    pos = 0
    for key, tag in enumerate(tags):
        pieces.append(text[pos : tag.name_end])
        pieces.append(f" {_MARKER}={key} ")
        pos = tag.name_end
    pieces.append(text[pos:])
    return "".join(pieces)


def _revealed(text: str, openers: list[int]) -> str:
    """``text`` with each conditional comment opener "<!--" made "<!-X": a bogus comment
    that ends at the condition's "]>", so what follows is parsed as markup. The length is
    unchanged, so the scanned offsets still hold."""
    pieces = []
    pos = 0
    for start in openers:
        pieces.append(text[pos:start])
        pieces.append("<!-X")
        pos = start + 4
    pieces.append(text[pos:])
    return "".join(pieces)


def _merged(regions: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in regions:
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _inside(tag: HrefTag, regions: list[tuple[int, int]]) -> bool:
    index = bisect.bisect_right(regions, (tag.start, sys.maxsize)) - 1
    return index >= 0 and tag.start < regions[index][1]


def _anchor_text(candidate: Candidate) -> str:
    """Visible text, whitespace collapsed; for an image-only link its ``alt``."""
    texts: list[str] = []
    alts: list[str] = []
    seen = chars = 0
    for root in candidate.nodes:
        texts.append(" ")  # clones split one link's text at a block boundary
        for node in root.traverse(include_text=True):
            seen += 1
            if seen > _WALK_NODES or chars > _WALK_CHARS:
                break
            if node.is_text_node:
                text = node.text_content or ""
                texts.append(text)
                chars += len(text)
            elif node.tag in _BREAKS:
                texts.append(" ")
            elif node.tag == "img":
                alts.append(node.attributes.get("alt") or "")
    text = " ".join("".join(texts).split())
    if not text:
        text = " ".join(" ".join(alts).split())
    if not text:
        text = " ".join((candidate.nodes[0].attributes.get("alt") or "").split())
    return text[:ANCHOR_TEXT_LIMIT]


def _attribute_text(url: str, quote: str) -> str:
    """``url`` as the text of an attribute value inside the original quotes."""
    value = url.replace("&", "&amp;")
    if quote == '"':
        return value.replace('"', "&quot;")
    if quote == "'":
        return value.replace("'", "&#39;")
    if value and not _UNQUOTED_UNSAFE.search(value):
        return value
    return '"' + value.replace('"', "&quot;") + '"'


def _splice(text: str, edits: list[tuple[int, int, str]]) -> str:
    if not edits:
        return text
    pieces = []
    pos = 0
    for start, end, replacement in sorted(edits):
        pieces.append(text[pos:start])
        pieces.append(replacement)
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces)
