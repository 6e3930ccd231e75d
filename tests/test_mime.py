"""The MIME walk (docs/mail.md): which parts are rewritten, how they are re-encoded, and
that every other byte goes out as it came."""

from __future__ import annotations

import email
import email.policy
import quopri
from email.message import Message

import pytest

from relay.message.mime import PartOutcome, part_spans, rewrite_html_parts
from relay.rewrite.links import Link, rewrite_links
from tests.test_rewrite import mint


class Rewriter:
    """The caller's side: one running link index across the parts of a message."""

    def __init__(self) -> None:
        self.links: list[Link] = []
        self.calls: list[str] = []

    def __call__(self, html: str) -> str:
        self.calls.append(html)
        result = rewrite_links(html, mint, tracking_hosts=["t.test"], first_index=len(self.links))
        self.links.extend(result.links)
        return result.html


def message(text: str, eol: bytes = b"\r\n", encoding: str = "utf-8") -> bytes:
    return text.encode(encoding).replace(b"\n", eol)


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def html_of(raw: bytes, number: int = 0) -> str:
    parts = [p for p in parse(raw).walk() if p.get_content_type() == "text/html"]
    part = parts[number]
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(part.get_content_charset() or "ascii")


SIMPLE = """From: a@example.com
To: b@example.com
Subject: hi
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 7bit

<p>Hello <a href="https://example.com/a">there</a></p>
"""


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"], ids=["crlf", "lf"])
def test_single_part_html(eol: bytes) -> None:
    raw = message(SIMPLE, eol)
    rewriter = Rewriter()
    result = rewrite_html_parts(raw, rewriter)
    assert result.raw == raw.replace(b"https://example.com/a", b"https://t.test/c/0")
    assert result.parts == (PartOutcome("1", True, None),)
    assert rewriter.links == [Link(0, "https://example.com/a", "there")]
    assert rewriter.calls == [message(SIMPLE.split("\n\n", 1)[1], eol).decode()]


ALTERNATIVE = """MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b(1)+?"

Preamble, left as it is.
--b(1)+?
Content-Type: text/plain; charset=us-ascii

Plain: https://example.com/plain
--b(1)+?
Content-Type: text/html; charset=us-ascii

<a href="https://example.com/one">one</a>
--b(1)+?
Content-Type: text/html; charset=us-ascii

<a href="https://example.com/two">two</a>

--b(1)+?--
Epilogue, left as it is.
"""


def test_alternative_rewrites_each_html_part_with_a_running_index() -> None:
    raw = message(ALTERNATIVE)
    rewriter = Rewriter()
    result = rewrite_html_parts(raw, rewriter)
    expected = raw.replace(b"https://example.com/one", b"https://t.test/c/0")
    assert result.raw == expected.replace(b"https://example.com/two", b"https://t.test/c/1")
    assert result.parts == (PartOutcome("2", True, None), PartOutcome("3", True, None))
    assert [link.index for link in rewriter.links] == [0, 1]


def test_part_spans_exclude_the_line_break_before_a_delimiter() -> None:
    body = b"pre\r\n--b\r\nA\r\n--b \r\n\r\nB\r\n\r\n--b--\r\nepi"
    assert [body[s:e] for s, e in part_spans(body, b"b")] == [b"A", b"\r\nB\r\n"]
    # Without a close delimiter the last part runs to the end.
    open_ended = b"--b\nA\n--b\nB\n"
    assert [open_ended[s:e] for s, e in part_spans(open_ended, b"b")] == [b"A", b"B\n"]
    # A boundary that only starts a line is no delimiter.
    assert part_spans(b"--bb\nA\n", b"b") == []


NESTED = """MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain

plain
--inner
Content-Type: multipart/related; boundary=rel

--rel
Content-Type: text/html; charset=utf-8

<a href="https://example.com/body"><img src="cid:logo" alt="Logo"></a>
--rel
Content-Type: image/png
Content-Transfer-Encoding: base64
Content-ID: <logo>

iVBORw0KGgo=
--rel--
--inner--
--outer
Content-Type: text/html; name="page.html"
Content-Disposition: attachment; filename="page.html"

<a href="https://example.com/attached">not a body part</a>
--outer
Content-Type: message/rfc822

Content-Type: text/html

<a href="https://example.com/forwarded">attached message</a>
--outer--
"""


def test_nested_parts_attachments_and_attached_messages() -> None:
    raw = message(NESTED)
    rewriter = Rewriter()
    result = rewrite_html_parts(raw, rewriter)
    assert result.raw == raw.replace(b"https://example.com/body", b"https://t.test/c/0")
    assert result.parts == (PartOutcome("1.2.1", True, None),)
    assert rewriter.links == [Link(0, "https://example.com/body", "Logo")]


def test_digest_parts_default_to_messages() -> None:
    raw = message(
        "Content-Type: multipart/digest; boundary=d\n\n--d\n\n"
        'Content-Type: text/html\n\n<a href="https://example.com/">x</a>\n--d--\n'
    )
    result = rewrite_html_parts(raw, Rewriter())
    assert result.raw == raw
    assert result.parts == ()


def nested_multipart(levels: int) -> bytes:
    head = "".join(
        f"Content-Type: multipart/mixed; boundary=b{n}\n\n--b{n}\n" for n in range(levels)
    )
    tail = "".join(f"\n--b{n}--" for n in reversed(range(levels)))
    html = 'Content-Type: text/html\n\n<a href="https://example.com/deep">deep</a>'
    return message(head + html + tail + "\n")


def test_nesting_depth_is_capped() -> None:
    raw = nested_multipart(60)
    result = rewrite_html_parts(raw, Rewriter())
    assert result.raw == raw
    (outcome,) = result.parts
    assert outcome.path == ".".join(["1"] * 50)  # the 51st multipart is not entered
    assert not outcome.rewritten
    assert outcome.error is not None and "50" in outcome.error
    shallow = rewrite_html_parts(nested_multipart(3), Rewriter(), max_depth=3)
    assert shallow.parts == (PartOutcome("1.1.1", True, None),)


LATIN1_QP = """MIME-Version: 1.0
Content-Type: text/html; charset="iso-8859-1"
Content-Transfer-Encoding: quoted-printable

<p>Caf=E9 cr=E8me, =A3 and =80 and =96 dashes: a line that is long enough to be =
softly broken by its sender.</p><a href=3D"https://example.com/caf=E9?a=3D1&amp;b=3D2">=
Men=FC</a>
"""


def test_iso_8859_1_quoted_printable() -> None:
    raw = message(LATIN1_QP)
    rewriter = Rewriter()
    result = rewrite_html_parts(raw, rewriter)
    assert rewriter.links == [Link(0, "https://example.com/café?a=1&b=2", "Menü")]
    header, body = result.raw.split(b"\r\n\r\n", 1)
    assert header == raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    assert b"\n" not in body.replace(b"\r\n", b"")
    before = quopri.decodestring(raw.split(b"\r\n\r\n", 1)[1])
    after = quopri.decodestring(body)
    assert after == before.replace(
        b"https://example.com/caf\xe9?a=1&amp;b=2", b"https://t.test/c/0"
    )


UTF8_BASE64 = """MIME-Version: 1.0
Content-Type: multipart/alternative; boundary=x

--x
Content-Type: text/html; charset=UTF-8
Content-Transfer-Encoding: base64

{body}
--x--
"""
