"""Where a tag really is in an HTML text, as lexbor reads it: the one helper behind the
honeypot's place (after the body start tag, relay/rewrite/honeypot.py) and the open pixel's
(before the body end tag, relay/rewrite/pixel.py).

A pattern finds candidates in the text, but a ``<body>`` or ``</body>`` may sit in a
comment, a script, a title or an attribute value, where it is no tag. So each candidate
gets a numbered marker in a copy of the text that only lexbor reads; a marker that lexbor
reads as markup (an attribute of the body element, an element of its own) stands at a
real tag, and one inside text stays text. The original text is never changed here.
"""

from __future__ import annotations

from collections.abc import Sequence

from selectolax.lexbor import LexborHTMLParser

MAX_CANDIDATES = 16  # candidates marked in one text; more are not looked at


def marked_tree(document: str, marks: Sequence[tuple[int, str]]) -> LexborHTMLParser:
    """lexbor's tree of ``document`` with each mark's text put in at its offset
    (``marks`` in ascending order of offset)."""
    pieces, pos = [], 0
    for at, text in marks:
        pieces += [document[pos:at], text]
        pos = at
    pieces.append(document[pos:])
    return LexborHTMLParser("".join(pieces))


def marker_number(value: str | None, count: int) -> int | None:
    """The candidate a marker's value names, if it is one of the ``count`` marked."""
    if value is None or not value.isdigit() or int(value) >= count:
        return None
    return int(value)
