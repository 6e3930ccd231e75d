"""The open pixel (docs/opens.md): inserted before ``</body>`` of each HTML part, once per
copy, byte-preservingly (every corpus document and message, relay/rewrite/pixel.py), and
switched by the route's ``track_opens``, ``X-LM-Override-Track-Opens`` and the send API's
``settings.track_opens``, over SMTP and HTTP."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from typing import Any

import pytest

from relay.message.body import decode_text
from relay.message.mime import rewrite_html_parts
from relay.rewrite.pixel import insert_pixel, pixel_html
from relay.server import Running
from tests.api_helpers import Clients, call
from tests.api_helpers import email as api_email
from tests.conftest import CORPUS, SIGNING_SECRET, send, simple_message
from tests.sink import Sink
from tests.test_corpus import EML_LINKS, HTML_LINKS
from tracker.config import SigningKey
from tracker.tokens import TokenVerifier

SRC = "http://pacme1.t.localhost:8080/o/TOKEN"
PIXEL = pixel_html(SRC)
SENT_PIXEL = re.compile(
    r'<img src="http://pacme1\.t\.localhost:8080/o/([A-Za-z0-9_.-]+)" width="1" height="1" '
    r'style="display:block;width:1px;height:1px;border:0;" alt="">')
VERIFIER = TokenVerifier([SigningKey("k1", SIGNING_SECRET)])


def test_the_pixel_is_lettermints_image() -> None:
    assert PIXEL == ('<img src="http://pacme1.t.localhost:8080/o/TOKEN" width="1" height="1" '
                     'style="display:block;width:1px;height:1px;border:0;" alt="">')


@pytest.mark.parametrize(("document", "expected"), [
    ("<html><body><p>x</p></body></html>", f"<html><body><p>x</p>{PIXEL}</body></html>"),
    ("<p>fragment", f"<p>fragment{PIXEL}"),
    ("<BODY>x</BODY >", f"<BODY>x{PIXEL}</BODY >"),
    ("<body>x</body\n>tail", f"<body>x{PIXEL}</body\n>tail"),
    ("<!-- </body> --><body>x</body>", f"<!-- </body> --><body>x{PIXEL}</body>"),
    ('<body><a title="</body>">x</a></body>', f'<body><a title="</body>">x</a>{PIXEL}</body>'),
    ('<body><script>"</body>"</script>x', f'<body><script>"</body>"</script>x{PIXEL}'),
    ("<body><textarea></body></textarea>", f"<body><textarea></body></textarea>{PIXEL}"),
    ("<body>a</body><p>b</p></body>", f"<body>a{PIXEL}</body><p>b</p></body>"),
    ("<body>a</bodyx>", f"<body>a</bodyx>{PIXEL}"),
    ("", PIXEL),
])
def test_the_pixel_goes_before_the_body_end_tag_lexbor_reads(document: str,
                                                             expected: str) -> None:
    assert insert_pixel(document, SRC) == expected


@pytest.mark.parametrize("name", sorted(HTML_LINKS))
def test_corpus_document_gets_one_pixel_and_nothing_else_changes(name: str) -> None:
    html, _ = decode_text((CORPUS / name).read_bytes(), None)
    out = insert_pixel(html, SRC)
    assert out.count(PIXEL) == 1
    at = out.index(PIXEL)
    assert out[:at] + out[at + len(PIXEL):] == html
    if re.search(r"</body\s*>", html, re.IGNORECASE):  # every such document ends its body
        assert re.match(r"</body\s*>", out[at + len(PIXEL):], re.IGNORECASE)


def html_parts(raw: bytes) -> list[str]:
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    out = []
    for part in message.walk():
        if part.get_content_type() == "text/html" and not part.is_multipart():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out.append(decode_text(payload, part.get_param("charset"))[0])
    return out


@pytest.mark.parametrize("name", sorted(EML_LINKS))
def test_corpus_message_gets_one_pixel_per_html_part(name: str) -> None:
    raw = (CORPUS / name).read_bytes()
    result = rewrite_html_parts(raw, lambda html: insert_pixel(html, SRC))
    assert [p.error for p in result.parts if p.error] == []
    before, after = html_parts(raw), html_parts(result.raw)
    rewritten = sum(p.rewritten for p in result.parts)
    assert sum(part.count(PIXEL) for part in after) == rewritten
    changed = 0
    for old, new in zip(before, after, strict=True):
        if new != old:
            changed += 1
            assert new.count(PIXEL) == 1
            at = new.index(PIXEL)
            assert new[:at] + new[at + len(PIXEL):] == old
    assert changed == rewritten
    for line in result.raw.splitlines():
        assert len(line) <= 998 or line in raw  # a long line the mail already had


# -- over SMTP and HTTP ---------------------------------------------------------------------------


@pytest.fixture
def settings(settings: dict[str, Any]) -> dict[str, Any]:
    routes = settings["projects"][0]["routes"]
    routes[0]["track_opens"] = True  # outgoing: clicks and opens; news: neither
    return settings


TWO_HTML_PARTS = (
    "From: a@acme.test\r\nTo: rcpt@example.org\r\nSubject: two\r\nMIME-Version: 1.0\r\n{headers}"
    'Content-Type: multipart/mixed; boundary="m"\r\n\r\n'
    "--m\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    '<html><body><a href="https://example.com/a">A</a></body></html>\r\n'
    "--m\r\nContent-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: "
    "quoted-printable\r\n\r\n<p>Gr=FC=DFe</p>\r\n"
    "--m\r\nContent-Type: text/plain\r\n\r\n</body> https://example.com/a\r\n--m--\r\n"
)


async def received(relay: Running, sink: Sink, raw: bytes, count: int = 1) -> bytes:
    await send(relay.smtp_port, raw)
    return (await sink.wait_for(count))[-1].content


async def test_a_route_with_track_opens_gets_one_pixel_per_html_part(
    relay: Running, sink: Sink
) -> None:
    content = await received(relay, sink, TWO_HTML_PARTS.format(headers="").encode())
    parts = html_parts(content)
    tokens = [SENT_PIXEL.findall(part) for part in parts]
    assert [len(found) for found in tokens] == [1, 1]
    assert tokens[0] == tokens[1]  # one token per copy
    claims = VERIFIER.verify_open(tokens[0][0])
    assert claims.project_sid == "acme1"
    assert await relay.store.get_message(claims.message_id) is not None
    # No </body>: at the end of the part (its line end belongs to the boundary, RFC 2046)
    assert parts[1] == "<p>Grüße</p>" + SENT_PIXEL.search(parts[1])[0]  # type: ignore[index]
    assert b"</body> https://example.com/a" in content  # the text part is untouched
    message = await relay.store.get_message(claims.message_id)
    assert message is not None and message.track_opens and message.track_clicks


@pytest.mark.parametrize(("headers", "pixels"), [
    ("X-LM-Override-Track-Opens: false\r\n", 0),
    ("X-Lettermint-Route: news\r\nX-LM-Override-Track-Opens: true\r\n", 1),
    ("X-Lettermint-Route: news\r\n", 0),
    ("X-Lettermint-Route: inbound\r\nX-LM-Override-Track-Opens: true\r\n", 0),
])
async def test_the_override_header_both_ways(
    relay: Running, sink: Sink, headers: str, pixels: int
) -> None:
    content = await received(relay, sink, simple_message(headers=headers))
    [html] = html_parts(content)
    assert len(SENT_PIXEL.findall(html)) == pixels
    if "news" in headers:  # clicks stay off on that route: only the pixel
        assert 'href="https://example.com/a"' in html
    if not pixels:
        assert html == '<p><a href="https://example.com/a">A</a></p>' or "/c/" in html


@pytest.mark.parametrize(("settings_", "pixels"), [
    ({"track_opens": False}, 0), ({"track_opens": True, "track_clicks": False}, 1), (None, 1)])
async def test_the_send_api_settings_both_ways(
    relay: Running, sink: Sink, sdk: Clients, settings_: dict[str, bool] | None, pixels: int
) -> None:
    fields: dict[str, Any] = {"html": "<html><body><p>Hi</p></body></html>"}
    if settings_ is not None:
        fields["settings"] = settings_
    answer = await call(sdk().emails.send, api_email(**fields))
    content = (await sink.wait_for(1))[0].content
    [html] = html_parts(content)
    assert len(SENT_PIXEL.findall(html)) == pixels
    message = await relay.store.get_message(answer["message_id"])
    assert message is not None and message.track_opens == bool(pixels)


def test_parsed_pixel_is_an_img_element() -> None:
    message = EmailMessage()
    message.set_content(insert_pixel("<body>x</body>", SRC), subtype="html")
    assert html_parts(message.as_bytes())[0].count(PIXEL) == 1


def test_a_line_the_pixel_would_take_past_998_octets_makes_the_part_quoted_printable() -> None:
    html = "<html><body><p>" + "x" * 970 + "</p></body></html>"
    raw = (b"From: a@acme.test\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 7bit\r\n\r\n" + html.encode() + b"\r\n")
    result = rewrite_html_parts(raw, lambda part: insert_pixel(part, SRC))
    assert all(len(line) <= 998 for line in result.raw.split(b"\r\n"))
    assert b"Content-Transfer-Encoding: quoted-printable" in result.raw
    [part] = html_parts(result.raw)
    assert part == html.replace("</body>", PIXEL + "</body>") + "\r\n"
