"""The ``Location`` of a redirect: the signed destination in ASCII form (docs/mail.md,
docs/redirect.md).

The destination is kept as the mail had it (non-ASCII characters, percent escapes, query
and fragment as written). An HTTP header is ASCII, so the host becomes its IDNA form and
every other character that may not stand in a URL is percent-encoded as UTF-8; what is
already ASCII and allowed (including existing ``%XX`` escapes) stays byte for byte.

A host with a character no host may have (a control character, a space, ``"``, ``<``…,
written or percent-encoded) is no destination: browsers refuse such a URL, and no such
byte may stand in a header (docs/hostile-input.md). The rewriter leaves such a link untracked
(``relay.rewrite.policy``), and a token that carries one gets the 404 page."""

from __future__ import annotations

import re
import string
from urllib.parse import quote, unquote

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
# The WHATWG URL standard's forbidden domain code points (C0 controls, space, DEL and
# "#%/:<>?@[\]^|"), and '"', '`', '{', '}', which no DNS name has either. A host is
# checked after percent-decoding, as browsers decode it, and in its IDNA form too (a
# full-width character can map to an ASCII one).
_FORBIDDEN_IN_HOST = re.compile(r'[\x00-\x20\x7f"#%/:<>?@\[\\\]^`{|}]')
_IPV6_LITERAL = re.compile(r"\[[0-9A-Fa-f:.]+\]")


class NotRedirectable(ValueError):
    """A destination that no browser should be sent to (not http(s), no host)."""


def ascii_location(url: str) -> str:
    match = _AUTHORITY.fullmatch(url)
    if match is None or match["scheme"].lower() not in ("http", "https"):
        raise NotRedirectable("not an absolute http(s) URL")
    host = _host(match["authority"])
    if not host:
        raise NotRedirectable("no host")
    if forbidden_host(unquote(host) if "%" in host else host):
        raise NotRedirectable("a character no host may have")
    if url.isascii() and _SAFE_CHARS.issuperset(url):
        return url  # the common case: nothing to convert
    authority, rest = _ascii_authority(match["authority"]), match["rest"]
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    path = rest[:end].replace("\\", "/")  # as browsers read http(s) paths
    location = f"{match['scheme']}://{authority}{_quote(path)}{_quote(rest[end:])}"
    if not _SAFE_CHARS.issuperset(location):  # never a byte a header may not carry
        raise NotRedirectable("a character no URL may have")
    return location


def forbidden_host(host: str) -> bool:
    """Whether ``host`` (percent-decoded) has a character no host may have, as it is or
    in its IDNA form; an IPv6 literal in brackets only hexadecimal digits, colons and
    dots."""
    if host.startswith("["):
        return _IPV6_LITERAL.fullmatch(host) is None
    if _FORBIDDEN_IN_HOST.search(host) is not None:
        return True
    return not host.isascii() and _FORBIDDEN_IN_HOST.search(_idna(host) or "") is not None


def _host(authority: str) -> str:
    hostport = authority.rpartition("@")[2]
    if hostport.startswith("["):
        return hostport[: hostport.find("]") + 1]
    return hostport.partition(":")[0]


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
    # Else browsers percent-decode the host before they resolve it.
    return _idna(host) or _quote(host)


def _idna(host: str) -> str | None:
    """The IDNA form of a host name (its ASCII labels are kept as they are)."""
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError:
        pass
    try:  # IDNA 2003, which browsers still apply to names IDNA 2008 refuses (emoji)
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def _quote(text: str) -> str:
    return quote(text, safe=_SAFE) if text else text
