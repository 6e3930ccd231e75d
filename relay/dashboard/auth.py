"""Signing in to the dashboard, and what guards every page (docs/dashboard.md).

An admin signs in with a name and password from ``[[dashboard.users]]`` (argon2 hashes) or
with the team token. A session lives in the store: its cookie holds a random id (the store
keeps only the id's SHA-256), HttpOnly, SameSite=Strict, Secure when the request came over
TLS or from a trusted proxy that says ``X-Forwarded-Proto: https``. Deleting the row ends
it at once on every node, so **Sign out** and expiry are immediate. Every form that changes
anything carries the session's CSRF token; the sign-in form carries one of its own, paired
with a short-lived cookie. Wrong passwords and tokens are slowed down per source network
and per name with SMTP AUTH's and the API's throttle (relay/throttle.py)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit

from aiohttp import web

from relay.config.dashboard import hash_password, verify_password
from relay.dashboard.pages import (
    SESSION_KEY,
    Dashboard,
    dashboard_of,
    error_page,
    render,
)
from relay.throttle import source_network
from store.clock import now_us
from store.records import DashboardSession
from tracker.clicks.network import client_address, parse_address
from tracker.http.status import METRICS_KEY

log = logging.getLogger("clickrelay.dashboard")

SESSION_COOKIE = "clickrelay_session"
LOGIN_COOKIE = "clickrelay_signin"  # pairs with the sign-in form's CSRF token
LOGIN_COOKIE_SECONDS = 3600
CSRF_FIELD = "csrf_token"
MAX_FORM_FIELD = 4096  # a name, password or token longer than this is refused unread
MAX_FORM_BYTES = 64 * 1024  # a dashboard form is a few fields: a larger body is not read

View = Callable[[web.Request], Awaitable[web.StreamResponse]]


def signed_in(view: View) -> View:
    """A page for a signed-in admin: without a live session, a redirect to /login; a
    POST without the session's CSRF token, 403."""

    @functools.wraps(view)
    async def guarded(request: web.Request) -> web.StreamResponse:
        session = await _session(request)
        if session is None:
            target = request.path_qs if request.method == "GET" else "/"
            raise web.HTTPFound(f"/login?next={quote(target, safe='/')}")
        request[SESSION_KEY] = session
        if request.method == "POST":
            refused = _oversized(request)
            if refused is not None:
                return refused
            form = await request.post()
            token = form.get(CSRF_FIELD)
            if not isinstance(token, str) or not hmac.compare_digest(
                    token.encode(), session.csrf_token.encode()):
                return error_page(request, 403, "Form refused",
                                  "This form was not sent from a page of this dashboard "
                                  "(its CSRF token is missing or wrong). Reload the page "
                                  "and try again.")
        return await view(request)

    return guarded


async def login_page(request: web.Request) -> web.StreamResponse:
    if await _session(request) is not None:
        raise web.HTTPFound(_next(request))
    return _login_form(request, 200, None)


async def login(request: web.Request) -> web.StreamResponse:
    refused = _oversized(request)
    if refused is not None:
        return refused
    form = await request.post()
    fields = {key: form.get(key) for key in ("name", "password", "token", CSRF_FIELD)}
    if not all(v is None or (isinstance(v, str) and len(v) <= MAX_FORM_FIELD)
               for v in fields.values()):
        return _login_form(request, 400, "The form's fields are too long or not text.")
    name, password, token, csrf = (str(fields[k] or "") for k in fields)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf.encode(), expected.encode()):
        return _login_form(request, 403, "The sign-in form had expired. Please try again.")
    dashboard = dashboard_of(request)
    keys = _throttle_keys(request, name if not token else "")
    wait = dashboard.api.throttle.wait(keys)
    if wait > 0:
        request.app[METRICS_KEY].auth_throttled.labels("dashboard").inc()
        response = _login_form(request, 429, "Too many failed sign-ins from your network: "
                               f"try again in {math.ceil(wait)} s.")
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    user = await _check(dashboard, name, password, token)
    if user is None:
        dashboard.api.throttle.failed(keys)
        log.info("dashboard sign-in refused")
        return _login_form(request, 401, "Wrong name and password, or wrong token.")
    return await _start_session(request, dashboard, user)


@signed_in
async def logout(request: web.Request) -> web.StreamResponse:
    await dashboard_of(request).store.end_session(_cookie_hash(request) or "")
    response = web.HTTPFound("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


@functools.cache
def _dummy_hash() -> str:
    """Checked when the name is unknown, so that an unknown name costs as long as a wrong
    password (made once, at first use)."""
    return hash_password(secrets.token_hex(16))


def _oversized(request: web.Request) -> web.Response | None:
    """A form body without a length, or longer than any form of the dashboard: refused
    before it is read."""
    length = request.content_length
    if length is None:
        return error_page(request, 411, "Form refused", "A form must be sent with its length "
                          "(Content-Length).")
    if length > MAX_FORM_BYTES:
        return error_page(request, 413, "Form refused", f"A form of {length} bytes is larger "
                          f"than any form of this dashboard ({MAX_FORM_BYTES} bytes at most).")
    return None


async def _check(dashboard: Dashboard, name: str, password: str, token: str) -> str | None:
    """The signed-in name ('' for the team token), or None."""
    config = dashboard.config()
    if token:
        team = config.api.team_token.encode()
        return "" if hmac.compare_digest(token.encode("utf-8", "surrogatepass"), team) else None
    user = config.dashboard.user(name) if name else None
    stored = user.password_hash if user is not None else await asyncio.to_thread(_dummy_hash)
    matches = await asyncio.to_thread(verify_password, stored, password)
    return name if user is not None and matches else None


async def _start_session(request: web.Request, dashboard: Dashboard, user: str
                         ) -> web.StreamResponse:
    now = now_us()
    hours = dashboard.config().dashboard.session_hours
    session_id = secrets.token_urlsafe(32)
    await dashboard.store.purge_sessions(now)
    await dashboard.store.create_session(DashboardSession(
        _hash(session_id), user, _credential(dashboard, user) or "",
        secrets.token_urlsafe(32), now, now + int(hours * 3600 * 1_000_000)))
    log.info("dashboard sign-in with %s", "a password" if user else "the team token")
    response = web.HTTPFound(_next(request))
    response.set_cookie(SESSION_COOKIE, session_id, path="/", httponly=True,
                        samesite="Strict", secure=is_https(request),
                        max_age=int(hours * 3600))
    response.del_cookie(LOGIN_COOKIE, path="/login")
    raise response


def _login_form(request: web.Request, status: int, problem: str | None) -> web.Response:
    csrf = secrets.token_urlsafe(32)
    response = render(request, "login.html", {
        "problem": problem, "login_csrf": csrf, "next": _next(request),
        "has_users": bool(dashboard_of(request).config().dashboard.users),
    }, status)
    response.set_cookie(LOGIN_COOKIE, csrf, path="/login", httponly=True, samesite="Strict",
                        secure=is_https(request), max_age=LOGIN_COOKIE_SECONDS)
    return response


async def _session(request: web.Request) -> DashboardSession | None:
    """The request's live session. One whose account is gone from the configuration, or
    whose password or token has changed since it signed in, is ended here."""
    id_hash = _cookie_hash(request)
    if id_hash is None:
        return None
    dashboard = dashboard_of(request)
    session = await dashboard.store.get_session(id_hash, now_us())
    if session is None:
        return None
    current = _credential(dashboard, session.user_name)
    if current is None or not hmac.compare_digest(current, session.credential):
        await dashboard.store.end_session(id_hash)
        return None
    return session


def _credential(dashboard: Dashboard, user: str) -> str | None:
    """A digest of what ``user`` signs in with ('' : the team token); None: no such user."""
    config = dashboard.config()
    if user:
        account = config.dashboard.user(user)
        secret = account.password_hash if account is not None else None
    else:
        secret = config.api.team_token
    if secret is None:
        return None
    return hashlib.sha256(b"clickrelay dashboard credential\0" + secret.encode()).hexdigest()


def _cookie_hash(request: web.Request) -> str | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw or len(raw) > 100:
        return None
    return _hash(raw)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


def is_https(request: web.Request) -> bool:
    """Over TLS, or from a trusted proxy that says the browser's request was."""
    if request.secure:
        return True
    peer = parse_address(request.remote)
    proxies = dashboard_of(request).config().http.trusted_proxies
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return peer is not None and any(peer in net for net in proxies) and forwarded == "https"


def _throttle_keys(request: web.Request, name: str) -> tuple[str, ...]:
    config = dashboard_of(request).config()
    address = client_address(request.remote, request.headers.getall("X-Forwarded-For", ()),
                             config.http.trusted_proxies)
    network = source_network(address)
    return (network, f"dashboard-user:{name}") if name else (network,)


def _next(request: web.Request) -> str:
    """Where to go after signing in: a path of this site only, never another origin."""
    target = request.query.get("next", "/")
    parts = urlsplit(target)
    if (not target.startswith("/") or target.startswith("//") or "\\" in target
            or parts.scheme or parts.netloc):
        return "/"
    return target
