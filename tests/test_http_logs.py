"""What the HTTP listener logs of a malformed request (docs/hostile-input.md): aiohttp logged
``Error handling request from 127.0.0.79`` at ERROR with the parser's exception, which
quotes the request, token included. No raw client address and no request bytes reach
the log: the client is named by its network label and keyed hash, as a click stores it,
and the exception by its class."""

from __future__ import annotations

import asyncio
import logging

import pytest

from relay.server import Running
from tests.redirecting import HOST, token
from tests.test_http_hostile import assert_redirect_still_correct
from tracker.http.logs import ServerLog
from tracker.http.redirect import REDIRECTOR_KEY

CLIENT = "127.0.0.79"  # a loopback address of its own, to look for in the log


def malformed(link_token: str) -> list[bytes]:
    """Requests aiohttp's parser refuses, each carrying the token in its request line
    (quoted by the parser's exception) or in a header."""
    line = f"GET /c/{link_token} HTTP/1.1\r\nHost: {HOST}\r\n"
    return [
        f"{line}X-Bad\x01Name: y\r\n\r\n".encode(),
        f"{line}Content-Length: {link_token}\r\n\r\n".encode(),
        f"G\x01T /c/{link_token} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode(),
        f"GET /c/{link_token} HTTP/1.1 trailing\r\nHost: {HOST}\r\n\r\n".encode(),
        f"{line}Transfer-Encoding: chunked\r\n\r\n{link_token}\r\n".encode(),
        f"{line}X-Token: {link_token}\r\nX-Token: \x7f{link_token}\r\n\r\n".encode(),
    ]


async def status_from(address: str, port: int, request: bytes) -> bytes:
    """The status line of the answer to ``request``, sent from ``address``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
    try:
        writer.write(request)
        await writer.drain()
        return await reader.readline()
    finally:
        writer.close()


@pytest.mark.usefixtures("both_click_paths")
async def test_a_malformed_request_is_logged_without_the_address_or_the_token(
    relay: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    link_token = token(message_id="m-secret")
    requests = malformed(link_token)
    statuses = [await status_from(CLIENT, relay.http_port, r) for r in requests]
    assert all(s.split()[1:2] == [b"400"] for s in statuses), statuses
    formatter = logging.Formatter()
    said = [formatter.format(record) for record in caplog.records]  # tracebacks too
    secrets = [CLIENT, *link_token.split(".")]
    assert not [text for text in said if any(secret in text for secret in secrets)]
    _, addr_hash = relay.app[REDIRECTOR_KEY].context().reduce_address(CLIENT, ())
    about_client = [r for r in caplog.records if addr_hash in r.getMessage()]
    assert len(about_client) >= 3  # the parser's refusals: logged, the client reduced
    assert all(r.name == "clickrelay.http" and r.levelno <= logging.INFO
               for r in about_client)
    await assert_redirect_still_correct(relay)


def test_a_failure_of_ours_is_logged_with_its_traceback_but_not_its_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As aiohttp logs an exception a view raised: the class and where, not the text
    (which may quote the request)."""
    server_log = ServerLog(lambda address: ("cloud:test", "0123456789abcdef"))
    quoted = f"/c/{token()}"
    try:
        raise KeyError(quoted)
    except KeyError:
        server_log.exception("Error handling request from %s", CLIENT)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is None
    text = record.getMessage()
    assert text.startswith("Error handling request from client 0123456789abcdef (cloud:test)"
                           ": KeyError\n")
    assert "test_a_failure_of_ours" in text  # the traceback's frames
    # The token, not "/c/": the traceback names this file, whose path may hold "/c/".
    assert CLIENT not in text and quoted not in text and quoted[3:] not in text
