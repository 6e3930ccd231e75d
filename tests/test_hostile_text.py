"""Text a stranger sends that PostgreSQL cannot hold as it is: a NUL character, and a lone
surrogate (docs/hostile-input.md, "Text PostgreSQL cannot hold"). SQLite stores both;
PostgreSQL gets U+FFFD in their place (store/postgres/storable.py). Either way the click is
redirected and recorded, the mail spooled and delivered, the request answered, the store
copied. Each relay test on a SQLite file, then on a PostgreSQL schema of its own, over real
sockets."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relay.server import Running, running
from store.clock import now_us
from store.postgres.storable import storable
from store.records import SharedBody
from store.store import Store
from tests.api_helpers import email as api_email
from tests.api_helpers import http
from tests.conftest import PROJECT_TOKEN, TEAM_TOKEN, finished, write_config
from tests.dashboard_helpers import Visitor, with_dashboard
from tests.redirecting import HOST, token
from tests.sink import Sink
from tests.test_click_bytes import status_of
from tests.test_smtp_hostile import AUTH, _converse
from tests.test_store_copy import copy_command, copy_of

both_stores = pytest.mark.usefixtures("both_stores")

QUEUED = re.compile(rb"queued as ([A-Za-z0-9_.-]+)")


def stored_as(relay: Running, text: str) -> str:
    """``text`` as the relay's store keeps it: as it is on SQLite, with U+FFFD for each NUL
    and lone surrogate on PostgreSQL."""
    if not relay.store.shared:
        return text
    return re.sub("[\x00\ud800-\udfff]", "\ufffd", text)


def test_storable_replaces_only_what_postgresql_cannot_hold() -> None:
    clean = ("plain", "Grüße", 42, None, b"\x00\xff")
    assert storable(clean) is clean  # nothing to replace: no copy
    assert storable(["a\x00b", "Grüße\udcff", "ok", b"\x00", 7]) == [
        "a\ufffdb", "Grüße\ufffd", "ok", b"\x00", 7]
    assert storable(iter(["x\ud800"])) == ["x\ufffd"]


@both_stores
@pytest.mark.usefixtures("both_click_paths")
async def test_a_click_whose_link_holds_a_nul_is_redirected_and_recorded(relay: Running) -> None:
    # The rewriter reads HTML as browsers do (a NUL becomes U+FFFD) and leaves a link with
    # bytes that are not UTF-8 untracked, so this token is minted here: it stands for any
    # text a destination may hold on its way from the token to the store.
    destination = "https://example.com/a\x00b"
    request = (f"GET /c/{token(destination, message_id='nul')} HTTP/1.1\r\n"
               f"Host: {HOST}\r\nUser-Agent: Mozilla/5.0\r\n\r\n".encode())
    assert (await status_of(relay, request)).startswith(b"HTTP/1.1 302 ")
    (stored,) = await relay.store.get_observations("nul")
    assert stored.destination == stored_as(relay, destination)


@both_stores
@pytest.mark.usefixtures("both_click_paths")
async def test_a_click_whose_headers_hold_a_nul_is_refused_and_the_next_recorded(
    relay: Running,
) -> None:
    # RFC 9110 (5.5): a NUL in a field value is refused; aiohttp's parser, which both click
    # paths use, answers 400. So no NUL in a header ever reaches the store.
    bad = (f"GET /c/{token(message_id='nul-header')} HTTP/1.1\r\nHost: {HOST}\r\n".encode()
           + b"User-Agent: Mozilla/5.0\x00evil\r\n\r\n")
    assert (await status_of(relay, bad)).startswith(b"HTTP/1.0 400 ")
    good = f"GET /c/{token(message_id='after')} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    assert (await status_of(relay, good)).startswith(b"HTTP/1.1 302 ")
    assert await relay.store.get_observations("nul-header") == []
    assert len(await relay.store.get_observations("after")) == 1


@both_stores
async def test_a_mail_whose_subject_holds_a_nul_is_spooled_and_delivered(
    relay: Running, sink: Sink
) -> None:
    replies = await _converse(relay.smtp_port, (
        b"EHLO client.test\r\nAUTH PLAIN " + AUTH.encode() + b"\r\n"
        b"MAIL FROM:<app@acme.test>\r\nRCPT TO:<rcpt@example.org>\r\nDATA\r\n"
        b"From: App\x00 <app@acme.test>\r\nTo: rcpt@example.org\r\n"
        b"Subject: Hi\x00there\r\nX-LM-Tag: t\x00g\r\n\r\n"
        b'<a href="https://example.com/a">A</a>\r\n.\r\nQUIT\r\n'))
    found = QUEUED.search(replies)
    assert found, replies
    delivered = await finished(relay, found.group(1).decode())
    assert delivered.status == "delivered"
    assert delivered.subject == stored_as(relay, "Hi\x00there")
    (received,) = await sink.wait_for(1)
    assert b"Subject: Hi\x00there" in received.content  # the mail itself goes on as it came


@both_stores
async def test_a_send_request_with_nul_in_its_fields_is_spooled_and_delivered(
    relay: Running, sink: Sink
) -> None:
    hostile = "a\x00b"
    request = api_email(subject=hostile, tag=hostile, metadata={"user": hostile})
    # A client sends the escape \u0000, which json.loads makes a NUL. (A lone surrogate's
    # escape is refused with 422 naming its field, tests/test_api_send.py, and so is a
    # control character in an address.)
    status, _, body = await http(relay, "POST", "/v1/send", data=json.dumps(request),
                                 headers={"x-lettermint-token": PROJECT_TOKEN,
                                          "content-type": "application/json"})
    assert status == 202, body
    delivered = await finished(relay, body["message_id"])
    assert delivered.status == "delivered"
    # The send API makes the mail's headers of these fields, a NUL as a space (RFC 9110
    # 5.5), and the store keeps what the mail carries.
    assert delivered.subject == delivered.tag == "a b"
    assert delivered.metadata == {"user": "a b"}
    await sink.wait_for(1)


@both_stores
async def test_a_search_for_a_nul_or_a_lone_surrogate_is_answered(relay: Running) -> None:
    for search in ("%00", "%ED%B3%BF", "a%00%ff"):
        status, _, body = await http(relay, "GET", f"/v1/messages?filter[search]={search}",
                                     headers={"authorization": f"Bearer {TEAM_TOKEN}"})
        assert status == 200, (search, body)


@pytest.fixture
async def dashboard(settings: dict[str, Any], config_path: Path) -> AsyncIterator[Running]:
    with_dashboard(settings)
    async with running(write_config(config_path, settings)) as relay:
        yield relay


@both_stores
async def test_the_dashboard_answers_a_nul_in_a_search_and_in_a_name(dashboard: Running) -> None:
    async with Visitor(dashboard) as visitor:
        status, _, page = await visitor.sign_in(name="ad\x00min", password="wrong")
        assert status == 401 and "Wrong name and password" in page
        assert (await visitor.sign_in())[0] == 302
        for search in ("\x00", "a\x00b"):
            status, _, _ = await visitor.get("/projects/acme/messages", params={"search": search})
            assert status == 200, search


async def test_a_sqlite_store_holding_a_nul_is_copied_to_postgresql(
    tmp_path: Path, pg_url: str
) -> None:
    # What a SQLite store kept of a stranger's text, NUL and all, moves up with the rest.
    source = tmp_path / "old" / "clickrelay.db"
    old = await Store.open(source)
    try:
        body = SharedBody("sub", (b"Subject: a\x00b\r\n\r\nclick ", b"\r\n"))
        await old.spool_messages([copy_of("m", "sub", body, b"t", now_us())])
        await old.db.write_statement("UPDATE messages SET subject = ?", ("a\x00b",))
    finally:
        await old.close()
    done = copy_command(f"sqlite:///{source}", pg_url)
    assert done.returncode == 0, done.stderr
    new = await Store.open(pg_url)
    try:
        copied = await new.get_message("m")
        assert copied is not None and copied.subject == "a\ufffdb"
        assert b"a\x00b" in await new.message_source("m")  # the mail itself, as it came
    finally:
        await new.close()
