"""Where the link attributes are in the original HTML text.

lexbor decides what is a link (``relay.rewrite.links``), but it keeps no source offsets and the
rewrite must splice new ``href`` values into the original text (docs/mail.md, byte
preservation). This module finds, in that text, the start tags that look like links
(``a``, ``area``, VML ``v:*``) and the exact span of their first ``href`` value, and the
Outlook conditional comments that may hold such tags.

A tag is read with the tokenizer rules of the HTML Standard (§13.2.5), which are the
same in every context, so the spans are exact once lexbor has confirmed that a tag really
starts there. Whether it does (or sits in a comment, a script, an attribute value) is not
decided here. All patterns are possessive, so every scan is linear in the input.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.entities import html5

_WS = "\t\n\f\r "
_ATTR_NAME = rf"[^{_WS}/>][^{_WS}/>=]*+"
# An unterminated quoted value runs to the end of input, as in the tokenizer; the tag is
# then dropped (eof-in-tag) by lexbor, and by us (no closing ">").
_VALUE = rf"""(?:"[^"]*+"?|'[^']*+'?|[^{_WS}>]++)"""
_ATTR = rf"{_ATTR_NAME}(?:[{_WS}]*+=[{_WS}]*+{_VALUE}?+)?+"
_HREF_NAME = rf"href(?=[{_WS}/>=]|\Z)"
# The tag name must end in whitespace or ">": after "<a/" the marker that
# relay.rewrite.links inserts could split an unquoted attribute value of an enclosing tag.
_LINK_NAME = rf"(?:a|area|v:[^{_WS}/>]*+)(?=[{_WS}>])"
_LINK_TAG = rf"""<(?P<name>{_LINK_NAME})
    (?:[{_WS}/]*+(?!{_HREF_NAME}){_ATTR})*+
    (?:[{_WS}/]*+{_HREF_NAME}[{_WS}]*+(?:=[{_WS}]*+(?P<value>{_VALUE})?+)?+)?+
    (?:[{_WS}/]*+{_ATTR})*+[{_WS}/]*+(?P<close>>)?"""
_FLAGS = re.ASCII | re.IGNORECASE | re.VERBOSE
_ANY_LINK_TAG = re.compile(_LINK_TAG, _FLAGS)
# Only a value that starts (after the blanks a URL parser strips) with "h" or a character
# reference can decode to an http(s) URL. The other link tags, and everything else, are
# skipped inside the regex engine, which is what keeps large documents cheap.
_MAY_BE_HTTP = r"[\x00-\x20]*+[h&]"
_OTHER_LINK_TAG = rf"""<{_LINK_NAME}
    (?:[{_WS}/]*+(?!{_HREF_NAME}){_ATTR})*+
    (?:[{_WS}/]*+{_HREF_NAME}
        (?:[{_WS}]*+=[{_WS}]*+(?!"{_MAY_BE_HTTP}|'{_MAY_BE_HTTP}|{_MAY_BE_HTTP}){_VALUE}?+
          |(?![{_WS}]*+=))
      |(?=[{_WS}/]*+(?:>|\Z)))
    (?:[{_WS}/]*+{_ATTR})*+[{_WS}/]*+>?"""
_NEXT_HTTP_LINK_TAG = re.compile(
    rf"(?:[^<]++|<(?!{_LINK_NAME})|{_OTHER_LINK_TAG})*+(?:{_LINK_TAG}|\Z)", _FLAGS
)
_OPENER = "<!--[if"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True, slots=True)
class HrefTag:
    """A link-shaped start tag with an ``href`` attribute."""

    start: int  # offset of "<"
    name_end: int  # offset just after the tag name
    name: str  # ASCII-lowercased, as the tokenizer emits it
    value_start: int  # span of the first href value, quotes excluded
    value_end: int
    quote: str  # '"', "'" or "" for an unquoted value


class TooManyLinks(ValueError):
    """More link tags than the caller's limit: the document is not read any further."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} link tags")
        self.limit = limit


def find_href_tags(
    text: str, *, http_only: bool = False, limit: int | None = None
) -> list[HrefTag]:
    """Complete ``<a>``/``<area>``/``<v:…>`` start tags with an href, in text order;
    with ``http_only``, only those whose href may turn out to be an http(s) URL. More
    than ``limit`` such tags raise ``TooManyLinks``.

    The search does not overlap: a tag-like run inside another one's attribute value is
    not reported, which keeps the scan linear."""
    tags: list[HrefTag] = []
    for match in _http_link_tags(text) if http_only else _ANY_LINK_TAG.finditer(text):
        if match.group("close") is None:
            continue
        span = _href_value_span(match)
        if span is None:
            continue
        if limit is not None and len(tags) >= limit:
            raise TooManyLinks(limit)
        name = match.group("name").translate(_ASCII_LOWER).replace("\0", "\ufffd")
        tags.append(HrefTag(match.start("name") - 1, match.end("name"), name, *span))
    return tags


def _http_link_tags(text: str) -> Iterator[re.Match[str]]:
    pos = 0
    while (match := _NEXT_HTTP_LINK_TAG.match(text, pos)) and match.group("name") is not None:
        yield match
        pos = match.end()


def _href_value_span(match: re.Match[str]) -> tuple[int, int, str] | None:
    if match.start("value") >= 0:
        start, end = match.span("value")
        quote = match.group("value")[0]
        if quote in "\"'":
            return start + 1, end - 1, quote
        return start, end, ""
    # No href, or one without a value: nothing a browser would follow.
    return None


def conditional_regions(text: str) -> list[tuple[int, int]]:
    """Spans of the ``<!--[if …]> … -->`` comments that mention ``href``.

    The span runs from the ``<!--`` to the first ``-->`` (or ``--!>``) after it, where the
    tokenizer ends any comment. A region holding ``<script`` is left out: there ``<!--``
    also steers the script-data states, so opening it could move the end of a script."""
    openers = _conditional_openers(text)
    ends = _CommentEnds(text)
    regions = []
    first = 0
    while first < len(openers):
        end_start, end = ends.after(openers[first] + len(_OPENER))
        last = first
        while last + 1 < len(openers) and openers[last + 1] + len(_OPENER) <= end_start:
            last += 1
        # Openers before one end share it: one lowered copy of the span serves them all.
        span = text[openers[first] : end]
        # str.lower() may change the length of non-ASCII text; offsets must hold.
        lowered = span.lower() if span.isascii() else span.translate(_ASCII_LOWER)
        last_href = lowered.rfind("href") + openers[first]
        last_script = lowered.rfind("<script") + openers[first]
        for start in openers[first : last + 1]:
            inside = start + len(_OPENER)
            if last_href >= inside and last_script < inside:
                regions.append((start, end))
        first = last + 1
    return regions


class _CommentEnds:
    """The first "-->" or "--!>" at or after a position. Each marker is searched again
    only once the position has passed the last one found, so a scan stays linear."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.found = {"-->": -1, "--!>": -1}

    def after(self, pos: int) -> tuple[int, int]:
        best = (len(self.text), len(self.text))
        for marker, at in self.found.items():
            if at < pos:
                found = self.text.find(marker, pos)
                at = self.found[marker] = found if found >= 0 else len(self.text)
            if at < best[0]:
                best = (at, at + len(marker))
        return best


def _conditional_openers(text: str) -> list[int]:
    openers = []
    pos = text.find("<!--[")
    while pos >= 0:
        if text[pos + 5 : pos + 7] in ("if", "iF", "If", "IF"):
            openers.append(pos)
        pos = text.find("<!--[", pos + 5)
    return openers


def decode_attribute(raw: str) -> str:
    """An attribute value as the tokenizer decodes it: character references resolved
    with the attribute-value rules, newlines normalised, NUL replaced."""
    if "&" in raw:
        raw = _CHARREF.sub(_replace_charref, raw)
    if "\r" in raw:
        raw = raw.replace("\r\n", "\n").replace("\r", "\n")
    return raw.replace("\0", "\ufffd")


def needs_decoding(raw: str) -> bool:
    """False when ``decode_attribute(raw) == raw``."""
    return "&" in raw or "\r" in raw or "\0" in raw


_CHARREF = re.compile(r"&(?:#[xX][0-9a-fA-F]++;?|#[0-9]++;?|[A-Za-z][A-Za-z0-9]*+;?)")
_LONGEST_ENTITY = max(map(len, html5))


def _replace_charref(match: re.Match[str]) -> str:
    ref = match.group()
    if ref[1] == "#":
        return html.unescape(ref)
    # The longest prefix that names a reference wins (§13.2.5.73); in an attribute value
    # a reference without ";" that is followed by "=" or an alphanumeric stays literal,
    # which keeps "?a=1&copy=2" intact.
    name = ref[1:]
    for size in range(min(len(name), _LONGEST_ENTITY), 0, -1):
        key = name[:size]
        if key in html5:
            break
    else:
        return ref
    following = name[size : size + 1] or match.string[match.end() : match.end() + 1]
    historical = following == "=" or (following.isascii() and following.isalnum())
    if historical and not key.endswith(";"):
        return ref
    return html5[key] + name[size:]
