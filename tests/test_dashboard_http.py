"""The dashboard's security rules over plain HTTP (docs/dashboard.md): every page wants a
session, cookies carry their flags, the Content-Security-Policy is on every page, no secret
of the configuration is ever in a page, forms without their CSRF token are refused, wrong
passwords are slowed down, and signing out ends the session on the server."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from yarl import URL

from relay.config.dashboard import hash_password
from relay.config.load import load_config
from relay.dashboard.auth import LOGIN_COOKIE, MAX_FORM_BYTES, SESSION_COOKIE
from relay.server import Running, running
from relay.throttle import FREE_FAILURES
from tests.api_helpers import read_text, write_text
from tests.conftest import (
    OTHER_TOKEN,
    PROJECT_TOKEN,
    SIGNING_SECRET,
    TEAM_TOKEN,
    finished,
    send,
    simple_message,
    write_config,
)
from tests.dashboard_helpers import (
    ADMIN,
    CSRF,
    LOADED,
    PASSWORD,
    WEBHOOK_SECRET,
    Visitor,
    password_hash,
    with_dashboard,
)
from tests.sink import Sink

# The tests where the store is the point also run on PostgreSQL (the rest, refusals that
# store nothing, on SQLite alone: the suite's time).
both_stores = pytest.mark.usefixtures("both_stores")

PAGES = ("/", "/projects/acme", "/projects/acme/routes", "/routes/acme-outgoing",
         "/projects/acme/activity", "/projects/acme/messages", "/projects/acme/webhooks",
         "/spool", "/messages/no-such-message")
FORMS = ("/logout", "/routes/acme-outgoing", "/webhooks/acme-hook/test",
         "/spool/x/retry", "/spool/x/drop")


@pytest.fixture
async def relay(settings: dict[str, Any], config_path: Path) -> AsyncIterator[Running]:
    async with running(write_config(config_path, with_dashboard(settings))) as r:
        yield r


async def signed_in(relay: Running) -> Visitor:
    visitor = Visitor(relay)
    status, response, _ = await visitor.sign_in()
    assert (status, response.headers["Location"]) == (302, "/")
    return visitor


async def test_every_page_redirects_to_sign_in_without_a_session(relay: Running) -> None:
    async with Visitor(relay) as visitor:
        for path in PAGES:
            status, response, _ = await visitor.get(path)
            assert status == 302, path
            assert response.headers["Location"].startswith("/login?next="), path
        for path in FORMS:
            status, response, _ = await visitor.post(path, {"csrf_token": "x"})
            assert (status, response.headers["Location"]) == (302, "/login?next=/"), path
        status, _, page = await visitor.get("/login")
        assert status == 200
        for label in ("Name", "Password", "Token"):
            assert f">{label}</label>" in page


@both_stores
async def test_sign_in_with_a_password_sets_a_strict_http_only_cookie(relay: Running) -> None:
    async with Visitor(relay) as visitor:
        status, response, _ = await visitor.sign_in()
        assert status == 302
        cookie = response.cookies[SESSION_COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and not cookie["secure"]
        assert cookie["path"] == "/" and len(cookie.value) >= 40
        status, _, page = await visitor.get("/")
        assert status == 200 and ">acme</a>" in page and ADMIN in page
        # The store keeps the id's hash, never the cookie itself.
        id_hash = hashlib.sha256(cookie.value.encode()).hexdigest()
        rows = await relay.store.db.fetchall("SELECT id_hash, user_name FROM dashboard_sessions")
        assert [tuple(r) for r in rows] == [(id_hash, ADMIN)]


async def test_cookie_is_secure_behind_tls_from_a_trusted_proxy(relay: Running) -> None:
    async with Visitor(relay, headers={"X-Forwarded-Proto": "https"}) as visitor:
        status, response, page = await visitor.get("/login")
        login_cookie = response.cookies[LOGIN_COOKIE]
        assert login_cookie["secure"] and login_cookie["httponly"]
        # A client keeps a Secure cookie for https: handed back here by hand.
        status, response, _ = await visitor.post(
            "/login", {"name": ADMIN, "password": PASSWORD, "csrf_token": visitor_csrf(page)},
            cookies={LOGIN_COOKIE: login_cookie.value})
        cookie = response.cookies[SESSION_COOKIE]
        assert status == 302 and cookie["secure"] and cookie["samesite"] == "Strict"


@both_stores
async def test_sign_in_with_the_team_token(relay: Running) -> None:
    async with Visitor(relay) as visitor:
        status, _, _ = await visitor.sign_in(name="", password="", token=TEAM_TOKEN)
        assert status == 302
        status, _, page = await visitor.get("/projects/acme/routes")
        assert status == 200 and "team token" in page


async def test_wrong_password_refused_then_slowed_down(relay: Running) -> None:
    async with Visitor(relay) as visitor:
        for _ in range(FREE_FAILURES):
            status, response, page = await visitor.sign_in(password="wrong")
            assert status == 401 and "Wrong name and password" in page
            assert SESSION_COOKIE not in response.cookies
        status, response, page = await visitor.sign_in()  # right, but not checked now
        assert status == 429 and int(response.headers["Retry-After"]) >= 1
        assert "Too many failed sign-ins" in page
        status, _, _ = await visitor.sign_in(name="", password="", token="wrong")
        assert status == 429
        status, _, _ = await visitor.get("/")
        assert status == 302


async def test_sign_in_without_its_form_token_is_refused(relay: Running) -> None:
    async with Visitor(relay) as visitor:
        status, _, _ = await visitor.post("/login", {"name": ADMIN, "password": PASSWORD})
        assert status == 403
        await visitor.form_token("/login")  # the cookie, but not the field
        status, _, _ = await visitor.post("/login", {"name": ADMIN, "password": PASSWORD,
                                                     "csrf_token": "guessed"})
        assert status == 403


async def test_sign_in_goes_back_to_the_page_asked_for_and_never_elsewhere(
    relay: Running
) -> None:
    async with Visitor(relay) as visitor:
        csrf = await visitor.form_token("/login")
        fields = {"name": ADMIN, "password": PASSWORD, "csrf_token": csrf}
        status, response, _ = await visitor.post("/login?next=//evil.test/x", fields)
        assert (status, response.headers["Location"]) == (302, "/")
        status, response, _ = await visitor.get("/login?next=/spool")
        assert (status, response.headers["Location"]) == (302, "/spool")


async def test_forms_without_their_csrf_token_get_403(relay: Running, config_path: Path
                                                      ) -> None:
    before = await read_text(config_path)
    visitor = await signed_in(relay)
    async with visitor:
        for fields in ({}, {"csrf_token": "not-the-token"}):
            status, _, page = await visitor.post("/routes/acme-outgoing", fields)
            assert status == 403 and "CSRF" in page
            status, _, _ = await visitor.post("/logout", fields)
            assert status == 403
        assert await read_text(config_path) == before
        status, _, _ = await visitor.get("/")
        assert status == 200


@both_stores
async def test_sign_out_ends_the_session_on_the_server(relay: Running) -> None:
    visitor = await signed_in(relay)
    async with visitor:
        cookie = visitor.session.cookie_jar.filter_cookies(URL(visitor.base))[SESSION_COOKIE].value
        status, response, _ = await visitor.submit("/", "/logout")
        assert (status, response.headers["Location"]) == (302, "/login")
    async with Visitor(relay) as copy:  # the old cookie, replayed
        status, _, _ = await copy.get("/", cookies={SESSION_COOKIE: cookie})
        assert status == 302
    assert await relay.store.db.fetchall("SELECT * FROM dashboard_sessions") == []


@both_stores
async def test_a_session_ends_when_it_expires(relay: Running) -> None:
    visitor = await signed_in(relay)
    async with visitor:
        (row,) = await relay.store.db.fetchall("SELECT id_hash, expires_at FROM "
                                               "dashboard_sessions")
        hours = (row[1] - (await relay.store.get_session(row[0], 0)).created_at) / 3600e6
        assert hours == pytest.approx(12.0)
        assert await relay.store.get_session(row[0], row[1] - 1) is not None
        assert await relay.store.get_session(row[0], row[1]) is None


async def test_pages_carry_the_content_security_policy_and_no_secret(
    relay: Running, sink: Sink
) -> None:
    await send(relay.smtp_port, simple_message(subject="Secrets check"))
    (row,) = await relay.store.message_page("acme", search="", before=None, limit=1)
    message = await finished(relay, row.message.id)
    secrets = [TEAM_TOKEN, PROJECT_TOKEN, OTHER_TOKEN, SIGNING_SECRET, WEBHOOK_SECRET,
               PASSWORD, password_hash(), password_hash().split("$")[-1]]
    visitor = await signed_in(relay)
    async with visitor:
        for path in (*PAGES, f"/messages/{message.id}", "/login",
                     "/projects/acme/activity?machine=1&period=24h"):
            status, response, page = await visitor.get(path)
            assert status in (200, 302, 404), path
            policy = response.headers.get("Content-Security-Policy", "")
            if status != 302:
                assert "script-src 'self'" in policy and "unsafe-inline" not in policy, path
                assert response.headers["X-Frame-Options"] == "DENY"
            for secret in secrets:
                assert secret not in page, (path, secret)
                assert secret not in str(response.url)


@both_stores
async def test_track_clicks_saved_through_the_route_api_code(
    relay: Running, config_path: Path
) -> None:
    visitor = await signed_in(relay)
    async with visitor:
        status, _, page = await visitor.submit("/routes/acme-news", "/routes/acme-news",
                                               {"track_clicks": "on"})
        assert status == 200 and "Saved" in page
        assert relay.config().find_route("acme-news")[1].track_clicks is True
        assert load_config(config_path).find_route("acme-news")[1].track_clicks is True
        status, _, page = await visitor.submit("/routes/acme-news", "/routes/acme-news")
        assert status == 200 and relay.config().find_route("acme-news")[1].track_clicks is False


@both_stores
async def test_a_file_changed_on_disk_is_reported_not_overwritten(
    relay: Running, config_path: Path
) -> None:
    visitor = await signed_in(relay)
    async with visitor:
        status, _, page = await visitor.get("/routes/acme-news")
        fields = {"csrf_token": visitor_csrf(page), "loaded": loaded_of(page),
                  "track_clicks": "on"}
        edited = "# edited by hand meanwhile\n" + await read_text(config_path)
        await write_text(config_path, edited)
        status, _, page = await visitor.post("/routes/acme-news", fields)
        assert status == 409 and "changed on disk" in page
        assert await read_text(config_path) == edited
        assert relay.config().find_route("acme-news")[1].track_clicks is False


async def test_an_inbound_route_cannot_be_switched(relay: Running, config_path: Path) -> None:
    before = await read_text(config_path)
    visitor = await signed_in(relay)
    async with visitor:
        status, _, page = await visitor.get("/routes/acme-inbound")
        assert status == 200 and "never tracks clicks" in page
        assert 'id="track_clicks" name="track_clicks" value="on"' in page
        assert "disabled aria-describedby" in page
        status, _, _ = await visitor.submit("/routes/acme-inbound", "/routes/acme-inbound",
                                            {"track_clicks": "on"})
        assert status == 200
    assert await read_text(config_path) == before


def visitor_csrf(page: str) -> str:
    return CSRF.findall(page)[-1]


def loaded_of(page: str) -> str:
    found = LOADED.search(page)
    assert found
    return found.group(1)


async def test_oversized_or_unsized_forms_are_refused_unread(relay: Running) -> None:
    visitor = await signed_in(relay)
    async with visitor:
        huge = "x" * (MAX_FORM_BYTES + 1)
        for path in ("/login", "/routes/acme-news"):
            status, _, page = await visitor.post(path, {"csrf_token": huge})
            assert status == 413 and "larger than any form" in page, path

        async def chunks() -> AsyncIterator[bytes]:
            yield b"csrf_token=x"

        async with visitor.session.post(visitor.base + "/login", data=chunks(),
                                        allow_redirects=False) as response:
            assert response.status == 411


@both_stores
async def test_a_changed_password_or_token_ends_the_sessions_signed_in_with_it(
    relay: Running, config_path: Path, settings: dict[str, Any]
) -> None:
    with_password = await signed_in(relay)
    with_token = Visitor(relay)
    status, _, _ = await with_token.sign_in(name="", password="", token=TEAM_TOKEN)
    assert status == 302
    async with with_password, with_token:
        settings["api"]["team_token"] = TEAM_TOKEN + "-rotated"
        await write_text(config_path, tomlkit.dumps(settings))
        assert await relay.config.reload()
        assert (await with_password.get("/"))[0] == 200
        assert (await with_token.get("/"))[0] == 302
        settings["dashboard"]["users"][0]["password_hash"] = hash_password("a new one")
        await write_text(config_path, tomlkit.dumps(settings))
        assert await relay.config.reload()
        assert (await with_password.get("/"))[0] == 302
    assert await relay.store.db.fetchall("SELECT * FROM dashboard_sessions") == []
