"""The ``Location`` of a redirect: the signed destination in ASCII form (DESIGN §4, §5).

The destination is kept as the mail had it (non-ASCII characters, percent escapes, query
and fragment as written). An HTTP header is ASCII, so the host becomes its IDNA form and
every other character that may not stand in a URL is percent-encoded as UTF-8; what is
already ASCII and allowed (including existing ``%XX`` escapes) stays byte for byte."""

from __future__ import annotations

import re
import string
from urllib.parse import quote

import idna

# Printable ASCII minus what the WHATWG URL standard percent-encodes in a path or query
# (space, ", <, >, `, {, }) and what RFC 3986 does not allow at all (\, ^, |). A
# backslash also ends the authority, as it does in browsers for http(s).
_SAFE = "".join(
    c for c in string.digits + string.ascii_letters + string.punctuation if c not in '"<>`{}\\^|'
)
_SAFE_CHARS = frozenset(_SAFE)
_AUTHORITY = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<authority>[^/?#\\]*)(?P<rest>.*)", re.S
)


class NotRedirectable(ValueError):
    """A destination that no browser should be sent to (not http(s), no host)."""


def ascii_location(url: str) -> str:
    match = _AUTHORITY.fullmatch(url)
    if match is None or match["scheme"].lower() not in ("http", "https"):
        raise NotRedirectable("not an absolute http(s) URL")
    if not match["authority"].rpartition("@")[2].partition(":")[0]:
        raise NotRedirectable("no host")
    if url.isascii() and _SAFE_CHARS.issuperset(url):
        return url  # the common case: nothing to convert
    authority, rest = _ascii_authority(match["authority"]), match["rest"]
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    path = rest[:end].replace("\\", "/")  # as browsers read http(s) paths
    return f"{match['scheme']}://{authority}{_quote(path)}{_quote(rest[end:])}"


def _ascii_authority(authority: str) -> str:
    userinfo, at, hostport = authority.rpartition("@")
    if hostport.startswith("["):  # an IPv6 literal is ASCII already
        host, port = hostport, ""
    else:
        host, colon, port = hostport.partition(":")
        port = colon + port
    return f"{_quote(userinfo)}{at}{_ascii_host(host)}{_quote(port)}"


def _ascii_host(host: str) -> str:
    if host.isascii():
        return _quote(host)
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError:
        pass
    try:  # IDNA 2003, which browsers still apply to names IDNA 2008 refuses (emoji)
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return _quote(host)  # browsers percent-decode the host before they resolve it


def _quote(text: str) -> str:
    return quote(text, safe=_SAFE) if text else text
