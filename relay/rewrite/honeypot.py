"""The hidden honeypot link of a route with ``bot_honeypot = true`` (docs/classification.md).

A person never sees it and cannot follow it: hidden by CSS for browsers and webmail
(``display:none``), for Outlook's Word engine (``mso-hide:all``), for screen readers
(``aria-hidden``) and for keyboards (``tabindex=-1``), with no text. A scanner that
follows every ``href`` of a mail follows it too, and its hit marks the clicks near it on
the same message as machine clicks.

A pure function, like the rewriter: it splices the link into the original
text right after the opening ``<body…>`` tag and changes no other byte. lexbor decides
which ``<body`` in the text is the tag: every candidate gets a numbered marker attribute
in a copy only lexbor reads, and lexbor's body element carries the marker of the first
one it took as the body start tag (a later stray ``<body>`` only adds attributes the
element does not have yet, HTML Standard §13.2.6.4.7), so a ``<body`` inside a comment,
a script or an attribute value is never chosen (relay/rewrite/markers.py).
"""

from __future__ import annotations

import html
import re

from relay.rewrite.markers import MAX_CANDIDATES, marked_tree, marker_number

_MARKER = "data-clickrelay-hp"
_WS = "\t\n\f\r "
_BODY_START = re.compile(rf"<body(?=[{_WS}/>])", re.ASCII | re.IGNORECASE)
# The rest of a start tag as the tokenizer reads it: attributes, quoted values may hold ">".
_TAG_REST = re.compile(
    rf"""(?:[{_WS}/]*+[^{_WS}/>][^{_WS}/>=]*+
    (?:[{_WS}]*+=[{_WS}]*+(?:"[^"]*+"|'[^']*+'|[^{_WS}>]++))?+)*+[{_WS}/]*+>""",
    re.VERBOSE,
)
# Markup that means the text is a whole document, not a fragment of a body.
_DOCUMENT_MARKUP = re.compile(r"<(?:!doctype|html|head|body)(?=[\t\n\f\r />])",
                              re.ASCII | re.IGNORECASE)

HIDDEN_STYLE = (
    "display:none;mso-hide:all;max-height:0;max-width:0;overflow:hidden;"
    "font-size:0;line-height:0;opacity:0"
)


def honeypot_html(href: str) -> str:
    """The hidden link: an empty anchor in an empty, hidden block."""
    url = html.escape(href, quote=True)
    return (
        f'<div aria-hidden="true" style="{HIDDEN_STYLE}">'
        f'<a href="{url}" tabindex="-1" aria-hidden="true" '
        f'style="display:none;mso-hide:all"></a></div>'
    )


def insert_honeypot(document: str, href: str) -> str | None:
    """``document`` with the hidden link right after its ``<body…>`` tag (at the start of a
    fragment that has no document markup at all); ``None`` when there is no such place."""
    offset = body_content_offset(document)
    if offset is None:
        return None
    return document[:offset] + honeypot_html(href) + document[offset:]


def body_content_offset(document: str) -> int | None:
    """Where the body's content starts in the text: just after the body start tag that
    lexbor took, or 0 for a bare fragment."""
    tags: list[tuple[int, int]] = []
    for match in _BODY_START.finditer(document):
        rest = _TAG_REST.match(document, match.end())
        if rest is not None:
            tags.append((match.start(), rest.end()))
        if len(tags) == MAX_CANDIDATES:
            break
    if not tags:
        return None if _DOCUMENT_MARKUP.search(document) else 0
    chosen = _body_tag_taken_by_lexbor(document, tags)
    return tags[chosen][1] if chosen is not None else None


def _body_tag_taken_by_lexbor(document: str, tags: list[tuple[int, int]]) -> int | None:
    # Unquoted and space-delimited: inside another attribute's quoted value (where lexbor
    # sees no tag) the marker must not end that value in the copy.
    marks = [(start + len("<body"), f" {_MARKER}={number} ")
             for number, (start, _) in enumerate(tags)]
    body = marked_tree(document, marks).body
    return marker_number(body.attributes.get(_MARKER) if body is not None else None, len(tags))
