"""Arbitrary headers over SMTP DATA (docs/hostile-input.md): random names and values, with 8-bit
bytes, RFC 2047 encoded words, folding, control-header names and huge values. Every mail
is answered 250 or 5xx: never 451 (that mail would be retried for days) and never a
dropped connection. After each, an ordinary mail is relayed and a click on it stored."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.server import Running
from tests.sink import Sink
from tests.smtp_helpers import assert_mail_and_clicks_still_work, data_reply

NAMES = [
    b"Subject", b"X-LM-Tag", b"X-LM-Metadata-order", b"X-LM-Metadata-", b"X-Lettermint-Route",
    b"X-LM-Override-Track-Clicks", b"X-LM-Override-Track-Opens", b"Idempotency-Key",
    b"Content-Type", b"Content-Transfer-Encoding", b"Content-Disposition", b"MIME-Version",
    b"From", b"To", b"Received", b"X-Custom",
]
PIECES = [
    b"=?utf-8?q?caf=C3=A9?=", b"=?utf-8?b?w6k=?=", b"=?iso-8859-1?q?=E9?=", b"=?x-bad?q?a?=",
    b"=?utf-8?q?=FF?=", b"=?", b"?=", b"\xff", b"\xc3", b"\xe9t\xe9", b"\x00", b"\t", b" ",
    b";", b'"', b"text/html", b"multipart/mixed; boundary=b", b"charset=utf-8", b"base64",
    b"quoted-printable", b"true", b"false", b"news", b"\r\n ", b"\r\n\t", b":", b"\\",
]


def header_name() -> st.SearchStrategy[bytes]:
    made = st.binary(min_size=1, max_size=20).filter(
        lambda b: b":" not in b and b"\r" not in b and b"\n" not in b)
    return st.one_of(st.sampled_from(NAMES), made)


def header_value() -> st.SearchStrategy[bytes]:
    piece = st.one_of(st.sampled_from(PIECES), st.binary(max_size=30).map(
        lambda b: b.replace(b"\r", b"").replace(b"\n", b"")))
    small = st.lists(piece, max_size=12).map(b"".join)
    # Huge values, folded so that no line reaches SMTP's limit.
    huge = st.tuples(st.sampled_from([*PIECES[:6], b"x" * 40]), st.integers(300, 700)).map(
        lambda t: b"\r\n ".join([t[0] * (900 // len(t[0]))] * (t[1] // 10)))
    return st.one_of(small, small, huge)


def headers() -> st.SearchStrategy[bytes]:
    field = st.tuples(header_name(), header_value()).map(lambda f: f[0] + b": " + f[1] + b"\r\n")
    return st.lists(field, min_size=1, max_size=8).map(b"".join)


BODY = b'\r\n<p><a href="https://example.com/fuzz">fuzz</a></p>\r\n'


# Huge header values are the point; hypothesis warns when it prints one.
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(head=headers())
async def test_arbitrary_headers_get_250_or_a_5xx(
    relay: Running, sink: Sink, caplog: pytest.LogCaptureFixture, head: bytes
) -> None:
    code, text = await data_reply(relay, head + BODY)
    assert code == 250 or 500 <= code < 600, (code, text)
    assert not [r for r in caplog.records if r.name.startswith("clickrelay")
                and (r.exc_info is not None or r.levelno >= logging.ERROR)]
    await assert_mail_and_clicks_still_work(relay, sink)
