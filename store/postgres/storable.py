"""Text PostgreSQL cannot hold, made storable where every statement's parameters are bound
(store/postgres/db.py), so that no value a stranger sends can make a write fail.

PostgreSQL's text refuses the NUL character, and asyncpg cannot encode a lone surrogate
(which Python's decoders make of undecodable bytes with ``surrogateescape``) as UTF-8. SQLite
stores both. Much of what the store writes comes from the network: a click's user agent,
headers and destination, an SMTP envelope, subject and names, the send API's fields, the
dashboard's search. Rather than clean each of those where it is read, and miss one, every
text parameter is checked here, and each such character is replaced with U+FFFD (the
replacement character), as a decoder does with bytes it cannot read (docs/hostile-input.md).

JSON the store writes itself is already safe: ``json.dumps`` escapes a NUL as ``\\u0000``,
which PostgreSQL keeps in a TEXT column as six characters (the store's JSON columns are
TEXT); a lone surrogate that ``json.dumps(..., ensure_ascii=False)`` leaves raw is replaced
like any other."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(params: Iterable[Any]) -> Sequence[Any]:
    """``params`` with every NUL and lone surrogate in its text replaced with U+FFFD; the
    same sequence, not a copy, when there are none (nearly always). Only text is looked
    into: bytes go to BYTEA, which holds anything.

    The check is made once over all the text of a statement joined (a batch of clicks has
    thousands of parameters: one loop in C, not one in Python per value): ``in`` finds a
    NUL at memchr's speed, ``str.isascii`` answers without reading the text (CPython
    records it), and only text beyond ASCII is encoded to find a surrogate, the way asyncpg
    will encode it (docs/performance.md has the cost)."""
    values = params if isinstance(params, (list, tuple)) else list(params)
    text = "".join(filter(str.__instancecheck__, values))
    if "\x00" not in text and (text.isascii() or _encodes(text)):
        return values
    return [_UNSTORABLE.sub(REPLACEMENT, v)
            if isinstance(v, str) and ("\x00" in v or not v.isascii()) else v
            for v in values]


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
