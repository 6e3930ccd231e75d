"""The open pixel (docs/opens.md): a transparent 1×1 image whose request tells that a copy
was opened, put just before the ``</body>`` tag of an HTML part, or at the end of a part
that has none.

A pure function, like the rewriter: it splices the image into the original text and
changes no other byte. lexbor decides which ``</body`` in the text is the tag
(relay/rewrite/markers.py): one inside a comment, a script, a title or an attribute value
is none, and the first one lexbor reads as a tag is taken (after it, a browser puts any
further content back into the body, so the image is shown wherever it stands).
"""

from __future__ import annotations

import html
import re
from itertools import islice

from relay.rewrite.markers import MAX_CANDIDATES, marked_tree, marker_number

PIXEL_STYLE = "display:block;width:1px;height:1px;border:0;"
_BODY_END = re.compile(r"</body(?=[\t\n\f\r />]|\Z)", re.ASCII | re.IGNORECASE)
_MARKER = "clickrelay-pixel-mark"  # a custom element name: lexbor keeps it as it is


def pixel_html(src: str) -> str:
    """The image, as Lettermint inserts it."""
    url = html.escape(src, quote=True)
    return f'<img src="{url}" width="1" height="1" style="{PIXEL_STYLE}" alt="">'


def insert_pixel(document: str, src: str) -> str:
    """``document`` with the image before its ``</body>`` tag, or at its end."""
    offset = body_end_offset(document)
    at = len(document) if offset is None else offset
    return document[:at] + pixel_html(src) + document[at:]


def body_end_offset(document: str) -> int | None:
    """Where the first ``</body>`` tag that lexbor reads as one starts; None when none
    does."""
    starts = [m.start() for m in islice(_BODY_END.finditer(document), MAX_CANDIDATES)]
    if not starts:
        return None
    marks = [(at, f"<{_MARKER} n={number}></{_MARKER}>") for number, at in enumerate(starts)]
    tree = marked_tree(document, marks)
    found = [marker_number(node.attributes.get("n"), len(starts))
             for node in tree.css(_MARKER)]
    real = [number for number in found if number is not None]
    return starts[min(real)] if real else None
