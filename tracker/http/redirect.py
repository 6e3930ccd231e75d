"""The redirect: ``GET``/``HEAD /c/{token}`` (docs/redirect.md), and the open pixel:
``GET``/``HEAD /o/{token}`` (docs/opens.md).

verify the token → check the host serves its project → store the observation (durable,
group-committed, within a deadline) → ``302 Location: destination``. A token signed by us
but expired still redirects and records nothing; anything else is a small 404 page,
never a redirect to a URL we did not sign.

An open goes the same way, and is always answered with the transparent image, whatever
its token: a recipient never sees a broken image. Only a valid token's open is recorded."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Final, Protocol

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from store.records import Observation
from tracker.clicks.network import address_reducer
from tracker.clicks.recorder import Waiter
from tracker.config import ConfigSource, TrackerView
from tracker.http.location import NotRedirectable, ascii_location
from tracker.metrics import Metrics
from tracker.tokens import ClickClaims, ExpiredToken, InvalidToken, TokenVerifier
from tracker.webhooks.events import OPEN_LINK_INDEX

log = logging.getLogger("clickrelay.redirect")

# What classification reads of a request (docs/classification.md), stored under lower-case names.
CLASSIFICATION_HEADERS = (
    "accept", "accept-language", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest",
    "sec-fetch-user", "purpose", "sec-purpose", "x-purpose", "x-moz", "sec-ch-ua",
    "sec-ch-ua-mobile", "sec-ch-ua-platform",
)
MAX_USER_AGENT = 1000  # characters kept; longer agents are cut, not refused
MAX_HEADER_VALUE = 500
# Remembered per configuration: destinations of the links being clicked, Host headers.
LOCATION_CACHE_SIZE = 1024
HOST_CACHE_SIZE = 256

NOT_FOUND_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>Link not found</title></head>
<body><h1>Link not found</h1>
<p>This link is not valid. If you copied it from an email, check that it was copied whole.</p>
</body>
</html>
"""
# On every answer to a tracking link, 302 or 404 (the listener's front writes the same).
NO_STORE_HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"})
_REDIRECT_HEADERS = CIMultiDictProxy(CIMultiDict(NO_STORE_HEADERS))  # copied for each answer
# The open pixel's answer: a transparent 1×1 GIF (43 bytes: white and black, index 0
# transparent), never kept by a cache between the recipient and us (docs/opens.md).
PIXEL_GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00"
             b"\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
PIXEL_HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {"Cache-Control": "no-store, private", "X-Robots-Tag": "noindex"})


class Recorder(Protocol):
    async def record(self, observation: Observation) -> bool: ...

    def queue(self, observation: Observation, waiter: Waiter) -> bool: ...

    @property
    def failing(self) -> str | None: ...


class ClickContext:
    """What the redirect derives from one configuration object, made when a reload puts
    a new one in force: the token verifier of its keys, and the answers that depend only
    on the configuration and one input, remembered (bounded) because clicks repeat them:
    the ``Location`` of a destination, whether a Host serves a project, what an address
    reduces to."""

    def __init__(self, config: TrackerView, verifier: TokenVerifier) -> None:
        self.config = config
        self.verifier = verifier
        self.settle_us = int(config.tracking.settle_seconds * 1_000_000)
        self.location = lru_cache(maxsize=LOCATION_CACHE_SIZE)(_location)

        def serves(host_header: str, sid: str) -> bool:
            return host_serves(host_header, sid, config)

        self.serves = lru_cache(maxsize=HOST_CACHE_SIZE)(serves)
        self.reduce_address = address_reducer(
            config.http.trusted_proxies, config.networks, config.tracking.address_hasher
        )

    def checked_location(self, host_header: str, claims: ClickClaims) -> str:
        """Where the click goes; ``InvalidToken`` if this host does not serve the token's
        project or the destination is not one a browser may be sent to."""
        if not self.serves(host_header, claims.project_sid):
            raise InvalidToken("token presented on another project's host")
        location, refusal = self.location(claims.destination)
        if location is None:
            raise InvalidToken(f"destination: {refusal}")
        return location

    def observe(self, peer: str | None, method: str, headers: CIMultiDictProxy[str],
                claims: ClickClaims, now_us: int) -> Observation:
        """The observation of one click (or open: ``OPEN_LINK_INDEX``, no destination):
        its claims, the request's shape, and the address reduced to a network label and
        a keyed hash."""
        forwarded = headers.getall("X-Forwarded-For", None)
        network, addr_hash = self.reduce_address(
            peer, () if forwarded is None else tuple(forwarded)
        )
        return Observation(
            claims.message_id, claims.link_index, claims.destination, claims.project_sid,
            now_us, method, valid_text(headers.get("User-Agent", "")[:MAX_USER_AGENT]),
            _classification_headers(headers), network, addr_hash, now_us + self.settle_us,
        )


class Redirector:
    """What the redirect view needs: the live configuration (seen through the
    ``ClickContext`` of the object in force), the observation recorder and the click
    counters."""

    def __init__(self, config: ConfigSource, recorder: Recorder, metrics: Metrics) -> None:
        self.config = config
        self.recorder = recorder
        self.recorded = metrics.clicks.labels("recorded")
        self.expired = metrics.clicks.labels("expired")
        self.refused = metrics.clicks.labels("refused")
        self.opens = {outcome: metrics.opens.labels(outcome)
                      for outcome in ("recorded", "expired", "refused")}
        self._context: ClickContext | None = None

    def context(self) -> ClickContext:
        """The context of the configuration in force, made anew when a reload replaced it
        (the verifier is kept when the keys did not change)."""
        config = self.config()
        context = self._context
        if context is None or context.config is not config:
            keys = config.tracking.signing_keys
            verifier = (context.verifier if context is not None
                        and context.verifier.keys == keys else TokenVerifier(keys))
            context = self._context = ClickContext(config, verifier)
        return context

    def decide(self, token: str, host: str, peer: str | None, method: str,
               headers: CIMultiDictProxy[str]) -> tuple[str | None, Observation | None]:
        """What to answer a click, whoever carries it over HTTP: the ``Location`` (None:
        the 404 page) and the observation to store before it goes out (None: the token
        expired, nothing is recorded)."""
        context = self.context()
        try:
            claims = context.verifier.verify(token)
            location = context.checked_location(host, claims)
        except ExpiredToken as exc:
            expired = exc.claims
            assert isinstance(expired, ClickClaims)  # ``verify`` reads a click token's claims
            try:
                location = context.checked_location(host, expired)
            except InvalidToken as refused:
                self._refuse(refused)
                return None, None
            self.expired.inc()
            return location, None
        except InvalidToken as exc:
            self._refuse(exc)
            return None, None
        return location, context.observe(peer, method, headers, claims, time.time_ns() // 1000)

    def count_recorded(self, opened: bool) -> None:
        (self.opens["recorded"] if opened else self.recorded).inc()

    def decide_open(self, token: str, host: str, peer: str | None, method: str,
                    headers: CIMultiDictProxy[str]) -> Observation | None:
        """The observation of an open to store before the image goes out; None when
        nothing is recorded (the token expired, is not ours, or is for another host)."""
        context = self.context()
        try:
            claims = context.verifier.verify_open(token)
            if not context.serves(host, claims.project_sid):
                raise InvalidToken("token presented on another project's host")
        except ExpiredToken:
            self.opens["expired"].inc()
            return None
        except InvalidToken as exc:
            self.opens["refused"].inc()
            log.debug("open pixel refused: %s", exc)
            return None
        opened = ClickClaims(claims.message_id, OPEN_LINK_INDEX, "", claims.project_sid,
                             claims.expires)
        return context.observe(peer, method, headers, opened, time.time_ns() // 1000)

    async def open_pixel(self, request: web.Request) -> web.Response:
        """The aiohttp view of ``/o/{token}`` (the front answers plain opens itself)."""
        observation = self.decide_open(request.match_info["token"], request.host,
                                       request.remote, request.method, request.headers)
        if observation is not None:
            await self.recorder.record(observation)
            self.count_recorded(True)
        return web.Response(body=PIXEL_GIF, content_type="image/gif", headers=PIXEL_HEADERS)

    async def click(self, request: web.Request) -> web.Response:
        """The aiohttp view (the listener's front answers plain clicks itself, the same
        way: see ``tracker.http.front``)."""
        location, observation = self.decide(request.match_info["token"], request.host,
                                            request.remote, request.method, request.headers)
        if location is None:
            return web.Response(status=404, text=NOT_FOUND_PAGE, content_type="text/html",
                                headers=NO_STORE_HEADERS)
        if observation is not None:
            await self.recorder.record(observation)
            self.recorded.inc()
        return _redirect(location)

    def _refuse(self, reason: Exception) -> None:
        self.refused.inc()
        log.debug("tracking link refused: %s", reason)


REDIRECTOR_KEY = web.AppKey("redirector", Redirector)


def _location(destination: str) -> tuple[str | None, str]:
    """The ``Location`` of a destination, or None and why it cannot be one."""
    try:
        return ascii_location(destination), ""
    except NotRedirectable as exc:
        return None, str(exc)


def host_serves(host_header: str, sid: str, config: TrackerView) -> bool:
    """Whether the Host the request named serves links of project ``sid``: its
    ``p{sid}.`` name under the tracking host, the tracking host itself when it is an IP
    address (it serves every project), or the project's own tracking domain."""
    host = _hostname(host_header)
    tracking = config.tracking
    if host == f"p{sid}.{tracking.hostname}":
        return True
    if tracking.shared_host and host.removeprefix("[").removesuffix("]") == tracking.hostname:
        return True
    return any(p.sid == sid and p.tracking_domain == host for p in config.projects)


def _hostname(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    name, _, port = host.rpartition(":")
    if name and port.isdigit():
        host = name
    return host.rstrip(".")


def _classification_headers(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    found = {}
    for name in CLASSIFICATION_HEADERS:
        value = headers.get(name)
        if value is not None:
            found[name] = valid_text(value[:MAX_HEADER_VALUE])
    return found


def valid_text(value: str) -> str:
    """A header value as text that can be stored: the HTTP parser keeps a byte that is
    not UTF-8 as a lone surrogate (``surrogateescape``), which has no UTF-8 form, so
    SQLite refuses the whole row; such bytes become U+FFFD, as a browser shows them
    (docs/hostile-input.md)."""
    if value.isascii():
        return value  # nearly every header: nothing to check
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate the parser cannot have made: still no text
        return value.encode("utf-8", "replace").decode("utf-8")


def _redirect(location: str) -> web.Response:
    headers = _REDIRECT_HEADERS.copy()
    headers["Location"] = location
    return web.Response(status=302, headers=headers)
