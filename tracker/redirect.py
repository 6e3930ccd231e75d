"""The redirect: ``GET``/``HEAD /c/{token}`` (DESIGN §5).

verify the token → check the host serves its project → store the observation (durable,
group-committed, within a deadline) → ``302 Location: destination``. A token signed by us
but expired still redirects and records nothing; anything else is a small 404 page,
never a redirect to a URL we did not sign."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from aiohttp import web
from multidict import CIMultiDictProxy

from store.records import Observation
from tracker.config import ConfigSource, SigningKey, TrackerView
from tracker.location import NotRedirectable, ascii_location
from tracker.metrics import Metrics
from tracker.network import address_hash, client_address
from tracker.tokens import ClickClaims, ExpiredToken, InvalidToken, TokenVerifier

log = logging.getLogger("clickrelay.redirect")

# What classification reads of a request (DESIGN §6), stored under lower-case names.
CLASSIFICATION_HEADERS = (
    "accept", "accept-language", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest",
    "sec-fetch-user", "purpose", "sec-purpose", "x-purpose", "x-moz", "sec-ch-ua",
    "sec-ch-ua-mobile", "sec-ch-ua-platform",
)
MAX_USER_AGENT = 1000  # characters kept; longer agents are cut, not refused
MAX_HEADER_VALUE = 500

NOT_FOUND_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="robots" content="noindex">
<title>Link not found</title></head>
<body><h1>Link not found</h1>
<p>This link is not valid. If you copied it from an email, check that it was copied whole.</p>
</body>
</html>
"""
_NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


class Recorder(Protocol):
    async def record(self, observation: Observation) -> bool: ...


class Redirector:
    """What the redirect view needs: the live configuration, the observation recorder
    and the click counters."""

    def __init__(self, config: ConfigSource, recorder: Recorder, metrics: Metrics) -> None:
        self.config = config
        self.recorder = recorder
        self.recorded = metrics.clicks.labels("recorded")
        self.expired = metrics.clicks.labels("expired")
        self.refused = metrics.clicks.labels("refused")
        self._verifier = TokenVerifier(())

    def verifier(self, keys: tuple[SigningKey, ...]) -> TokenVerifier:
        """The verifier of the keys in force, made anew when a reload changed them."""
        if self._verifier.keys != keys:
            self._verifier = TokenVerifier(keys)
        return self._verifier


REDIRECTOR_KEY = web.AppKey("redirector", Redirector)


def add_redirect_routes(app: web.Application, redirector: Redirector) -> None:
    app[REDIRECTOR_KEY] = redirector
    # Any path under /c/ reaches the view, so that every refusal is the same 404 page.
    app.router.add_get("/c/{token:.*}", click)  # GET and HEAD


async def click(request: web.Request) -> web.Response:
    r = request.app[REDIRECTOR_KEY]
    config = r.config()
    try:
        verifier = r.verifier(config.tracking.signing_keys)
        claims = verifier.verify(request.match_info["token"])
        location = _checked_location(request, config, claims)
    except ExpiredToken as exc:
        try:
            location = _checked_location(request, config, exc.claims)
        except InvalidToken as refused:
            return _refuse(r, refused)
        r.expired.inc()
        return _redirect(location)
    except InvalidToken as exc:
        return _refuse(r, exc)
    await r.recorder.record(observe(request, config, claims, time.time_ns() // 1000))
    r.recorded.inc()
    return _redirect(location)


def _checked_location(request: web.Request, config: TrackerView, claims: ClickClaims) -> str:
    if not host_serves(request.host, claims.project_sid, config):
        raise InvalidToken("token presented on another project's host")
    try:
        return ascii_location(claims.destination)
    except NotRedirectable as exc:
        raise InvalidToken(f"destination: {exc}") from exc


def host_serves(host_header: str, sid: str, config: TrackerView) -> bool:
    """Whether the Host the request named serves links of project ``sid``: its
    ``p{sid}.`` name under the tracking host, or the project's own tracking domain."""
    host = _hostname(host_header)
    if host == f"p{sid}.{config.tracking.hostname}":
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


def observe(
    request: web.Request, config: TrackerView, claims: ClickClaims, now_us: int
) -> Observation:
    """The observation of one click: its claims, the request's shape, and the address
    reduced to a network label and a keyed hash."""
    headers = request.headers
    address = client_address(
        request.remote, headers.getall("X-Forwarded-For", ()), config.http.trusted_proxies
    )
    tracking = config.tracking
    return Observation(
        message_id=claims.message_id,
        link_index=claims.link_index,
        destination=claims.destination,
        project_sid=claims.project_sid,
        at=now_us,
        method=request.method,
        user_agent=headers.get("User-Agent", "")[:MAX_USER_AGENT],
        headers=_classification_headers(headers),
        network=config.networks.label(address) if address is not None else None,
        addr_hash=address_hash(tracking.address_hasher, address),
        promote_after=now_us + int(tracking.settle_seconds * 1_000_000),
    )


def _classification_headers(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    found = {}
    for name in CLASSIFICATION_HEADERS:
        value = headers.get(name)
        if value is not None:
            found[name] = value[:MAX_HEADER_VALUE]
    return found


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, **_NO_STORE})


def _refuse(r: Redirector, reason: Exception) -> web.Response:
    r.refused.inc()
    log.debug("tracking link refused: %s", reason)
    return web.Response(status=404, text=NOT_FOUND_PAGE, content_type="text/html",
                        headers=_NO_STORE)
