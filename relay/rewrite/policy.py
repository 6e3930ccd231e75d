"""Which hrefs are tracked: the skip rules of docs/mail.md, applied to one link.

Pure functions over an href value (already decoded by the HTML parser) and the element's
attributes; ``relay.rewrite.links`` calls them for every link lexbor found.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Collection, Iterable, Mapping
from types import MappingProxyType
from urllib.parse import unquote

from tracker.http.location import forbidden_host

# Opt-out attributes (docs/mail.md): ours, and the ones templates written for other
# platforms already carry (Postmark, Amazon SES, SendGrid, Mautic, …); Mandrill's and
# SparkPost's are honoured as well.
_OPT_OUT_PRESENT = frozenset(
    {
        "data-lm-no-track",
        "data-pm-no-track",
        "ses:no-track",
        "mautic:disable-tracking",
        "mc:disable-tracking",
    }
)
_OPT_OUT_VALUE = MappingProxyType(
    {"clicktracking": "off", "disable-tracking": "true", "data-msys-clicktrack": "0"}
)

# The URL parser strips leading and trailing C0 controls and spaces and drops every tab
# and newline inside (WHATWG URL, "basic URL parser").
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
_TAB_NEWLINE = str.maketrans("", "", "\t\n\r")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_AUTHORITY_END = re.compile(r"[/\\?#]")
# A destination must fit in a token the redirect accepts (tracker.tokens.MAX_TOKEN_LENGTH,
# 8000 characters): the token carries it JSON-escaped (a non-ASCII character may take six
# characters) and base64 makes that a third longer. A longer one stays as it is.
MAX_DESTINATION_LENGTH = 4096
# Merge tags of the template languages senders use; one left in a URL means the mail
# was not rendered yet, or will be by someone downstream, so the URL is not final.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{%|%\}|\*\|[^|]*\|\*|<%|%>|\[\[|\]\]|%%[A-Za-z_=]|\$\{")
# The URLs of a List-Unsubscribe field: each in angle brackets (RFC 2369, section 2).
_BRACKETED = re.compile(r"<([^<>]*)>")
_WHITESPACE = re.compile(r"\s+")


def browser_destination(href: str) -> str:
    """The URL a browser follows for this (entity-decoded) href value."""
    return href.strip(_C0_AND_SPACE).translate(_TAB_NEWLINE)


def opted_out(attributes: Mapping[str, str | None]) -> bool:
    for name, value in attributes.items():
        if name in _OPT_OUT_PRESENT:
            return True
        wanted = _OPT_OUT_VALUE.get(name)
        if wanted is not None and (value or "").strip().lower() == wanted:
            return True
    return False


def normalise_hosts(hosts: Collection[str]) -> tuple[str, ...]:
    """Tracking host names, lowercased, without a port or a trailing dot (an IDN host
    also in its ASCII form)."""
    out = []
    for host in hosts:
        name = host.strip().lower()
        if not name.startswith("["):
            name = name.partition(":")[0]
        name = name.rstrip(".")
        if name:
            out.append(name)
        if not name.isascii():
            with contextlib.suppress(UnicodeError):
                out.append(name.encode("idna").decode("ascii"))
    return tuple(out)


def list_unsubscribe_urls(values: Iterable[str]) -> frozenset[str]:
    """The http(s) URLs of a mail's List-Unsubscribe fields (their unfolded values). White
    space inside the brackets is not part of the URL (RFC 2369, section 2)."""
    urls = set()
    for value in values:
        for match in _BRACKETED.finditer(value):
            url = _WHITESPACE.sub("", match.group(1))
            scheme = _SCHEME.match(url)
            if scheme is not None and scheme.group(1).lower() in ("http", "https"):
                urls.add(url)
    return frozenset(urls)


def skip_reason(
    destination: str, tracking_hosts: tuple[str, ...], untracked: Collection[str] = ()
) -> str | None:
    """Why this destination is not tracked, or None if it is (``tracking_hosts`` as
    returned by ``normalise_hosts``; ``untracked``: the URLs of the mail's List-Unsubscribe
    field, unsubscribe links whatever their words, such as listmonk's ``/subscription/…``)."""
    if not destination:
        return "empty"
    if destination in untracked:
        return "list-unsubscribe"
    if len(destination) > MAX_DESTINATION_LENGTH or (
        not destination.isascii() and len(json.dumps(destination)) > MAX_DESTINATION_LENGTH
    ):
        return "too long"
    scheme = _SCHEME.match(destination)
    if scheme is None:
        return "relative"
    if scheme.group(1).lower() not in ("http", "https"):
        return f"scheme {scheme.group(1).lower()}"
    if _PLACEHOLDER.search(destination):
        return "placeholder"
    lowered = destination.lower()
    if "unsubscribe" in lowered or "unsubscribe" in unquote(lowered):
        return "unsubscribe"
    host = url_host(destination, scheme.end())
    if not host:
        return "no host"
    if _is_ours(host, tracking_hosts):
        return "tracking host"
    if forbidden_host(host):  # a control byte, a space, '"', '<'…: the redirect refuses it
        return "host characters"  # (docs/hostile-input.md)
    return None


def url_host(url: str, after_scheme: int) -> str:
    """The host of a special-scheme URL, found the way a browser finds it: any run of
    "/" or "\\" after the scheme, userinfo up to the last "@", no port, no final dot."""
    rest = url[after_scheme:].lstrip("/\\")
    end = _AUTHORITY_END.search(rest)
    authority = rest[: end.start()] if end else rest
    host = authority.rpartition("@")[2]
    host = host[: host.find("]") + 1] if host.startswith("[") else host.partition(":")[0]
    return unquote(host).lower().rstrip(".")


def _is_ours(host: str, tracking_hosts: tuple[str, ...]) -> bool:
    candidates = {host}
    if not host.isascii():
        with contextlib.suppress(UnicodeError):
            candidates.add(host.encode("idna").decode("ascii"))
    return any(
        name == ours or name.endswith("." + ours) for name in candidates for ours in tracking_hosts
    )
