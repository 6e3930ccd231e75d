"""The MIME walk, continued (docs/mail.md): charsets, transfer encodings and what goes out
unchanged."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.message.mime import PartOutcome, rewrite_html_parts
from relay.rewrite.links import Link
from tests.test_mime import (
    ALTERNATIVE,
    LATIN1_QP,
    NESTED,
    SIMPLE,
    UTF8_BASE64,
    Rewriter,
    html_of,
    message,
    nested_multipart,
)


def test_utf8_base64() -> None:
    html = '<p>Grüße – 你好</p><a href="https://例え.jp/パス?q=ü">Öffnen</a>' + "<p>filler</p>" * 20
    encoded = base64.encodebytes(html.encode()).decode().strip()
    raw = message(UTF8_BASE64.format(body=encoded))
    rewriter = Rewriter()
    result = rewrite_html_parts(raw, rewriter)
    assert rewriter.links == [Link(0, "https://例え.jp/パス?q=ü", "Öffnen")]
    assert html_of(result.raw) == html.replace("https://例え.jp/パス?q=ü", "https://t.test/c/0")
    body = result.raw.split(b"base64\r\n\r\n", 1)[1].split(b"\r\n--x--")[0]
    lines = body.split(b"\r\n")
    assert all(len(line) == 76 for line in lines[:-1]) and len(lines[-1]) <= 76


def test_long_8bit_line_switches_to_quoted_printable() -> None:
    filler = "ä" * 400  # 800 octets in UTF-8
    html = f'<p>{filler}<a href="https://e.com/x">x</a></p>'
    raw = message(
        "Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: 8bit\n"
        f"X-Other: kept\n\n{html}\n"
    )

    def long_mint_rewrite(html: str) -> str:
        return html.replace("https://e.com/x", "https://t.test/c/" + "t" * 300)

    result = rewrite_html_parts(raw, long_mint_rewrite)
    assert result.parts == (PartOutcome("1", True, None),)
    header, body = result.raw.split(b"\r\n\r\n", 1)
    assert header == (
        b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable"
        b"\r\nX-Other: kept"
    )
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    assert html_of(result.raw) == long_mint_rewrite(html) + "\r\n"


def test_short_8bit_lines_stay_8bit_and_a_7bit_part_without_a_header_gets_one() -> None:
    raw = message(
        'Content-Type: text/html; charset=utf-8\n\n<p>ä</p><a href="https://e.com/">x</a>\n'
    )
    result = rewrite_html_parts(raw, Rewriter())
    assert result.raw == raw.replace(b"https://e.com/", b"https://t.test/c/0")
    long_line = message(
        "Content-Type: text/html\n\n" + '<a href="https://e.com/">x</a>' + "y" * 990 + "\n"
    )
    switched = rewrite_html_parts(long_line, Rewriter()).raw
    assert switched.startswith(
        b"Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    assert html_of(switched).startswith('<a href="https://t.test/c/0">x</a>yyy')


@pytest.mark.parametrize(
    ("charset", "added", "expected"),
    [
        ("us-ascii", "é ✓", b"&#233; &#10003;"),
        ("iso-8859-1", "é ✓", b"\xe9 &#10003;"),
        ("koi8-r", "Ж €", b"\xf6 &#8364;"),
    ],
)
def test_characters_the_charset_cannot_hold_become_references(
    charset: str, added: str, expected: bytes
) -> None:
    raw = message(
        f"Content-Type: text/html; charset={charset}\nContent-Transfer-Encoding: 8bit\n\n<p>x</p>\n"
    )
    result = rewrite_html_parts(raw, lambda html: html.replace("x", added))
    assert result.raw == raw.replace(b"<p>x</p>", b"<p>" + expected + b"</p>")


def test_8bit_data_in_a_7bit_part_switches_to_quoted_printable() -> None:
    raw = message("Content-Type: text/html; charset=iso-8859-1\n\n<p>x</p>\n")
    result = rewrite_html_parts(raw, lambda html: html.replace("x", "é"))
    assert result.raw == message(
        "Content-Type: text/html; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable"
        "\n\n<p>=E9</p>\n"
    )


CHARSETS = [
    ("unknown-label", 'charset="x-unknown-8bit"', "ä".encode(), "ä"),
    ("bogus-param", 'charset="charset=us-ascii"', b"plain", "plain"),
    ("no-charset-utf8", "", "ü".encode(), "ü"),
    ("no-charset-latin1", "", b"\xfc", "ü"),
    ("wrong-declared-utf8", "charset=utf-8", b"\xfc\xe4", "\udcfc\udce4"),
    ("x-mac-cyrillic", "charset=x-mac-cyrillic", "Привет".encode("mac_cyrillic"), "Привет"),
    ("windows-1251", "charset=windows-1251", "Привет".encode("cp1251"), "Привет"),
    ("big5", 'charset="big5"', "中文".encode("big5"), "中文"),
    ("gb2312", "charset=gb2312", "中文".encode("gb2312"), "中文"),
    ("koi8-r", "charset=koi8-r", "Привет".encode("koi8-r"), "Привет"),
    ("cp1252-in-latin1", "charset=iso-8859-1", b"\x93q\x94", "\u201cq\u201d"),
    ("bytes-codec-name", "charset=base64", b"plain", "plain"),
]


@pytest.mark.parametrize(
    ("params", "data", "text"), [c[1:] for c in CHARSETS], ids=[c[0] for c in CHARSETS]
)
def test_declared_wrong_and_unknown_charsets(params: str, data: bytes, text: str) -> None:
    ctype = f"text/html; {params}" if params else "text/html"
    raw = f"Content-Type: {ctype}\r\n\r\n".encode() + data + b'<a href="https://e.com/">x</a>'
    rewriter = Rewriter()
    result = rewrite_html_parts(raw, rewriter)
    assert rewriter.calls == [text + '<a href="https://e.com/">x</a>']
    assert result.raw == raw.replace(b"https://e.com/", b"https://t.test/c/0")


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_keeps_its_byte_order_mark(codec: str) -> None:
    html = '\ufeff<a href="https://e.com/">ok</a>'
    raw = b"Content-Type: text/html; charset=utf-16\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    raw += base64.encodebytes(html.encode(codec)).replace(b"\n", b"\r\n")
    result = rewrite_html_parts(raw, Rewriter())
    body = result.raw.split(b"\r\n\r\n", 1)[1]
    assert base64.b64decode(body).decode(codec) == html.replace(
        "https://e.com/", "https://t.test/c/0"
    )


@pytest.mark.parametrize(
    ("cte", "body"),
    [
        ("8bits", '<a href="https://e.com/">x</a>'),
        ("text/html", '<a href="https://e.com/">x</a>'),
        ("", '<a href="https://e.com/">x</a>'),
        ("quoted printable", '<a href=3D"https://e.com/">x</a>'),
        ("Quoted-Printable", '<a href=3D"https://e.com/">x</a>'),
        ("BASE64", base64.b64encode(b'<a href="https://e.com/">x</a>').decode()),
    ],
)
def test_transfer_encoding_spellings(cte: str, body: str) -> None:
    raw = message(f"Content-Type: text/html\nContent-Transfer-Encoding: {cte}\n\n{body}\n")
    rewriter = Rewriter()
    result = rewrite_html_parts(raw, rewriter)
    assert [link.destination for link in rewriter.links] == ["https://e.com/"]
    assert result.raw.split(b"\r\n\r\n")[0] == raw.split(b"\r\n\r\n")[0]


def test_fail_open_on_undecodable_part() -> None:
    raw = message("Content-Type: text/html\nContent-Transfer-Encoding: base64\n\nnot base64!!!x\n")
    result = rewrite_html_parts(raw, Rewriter())
    assert result.raw == raw
    (outcome,) = result.parts
    assert outcome.path == "1" and not outcome.rewritten
    assert outcome.error is not None and "base64" in outcome.error


def test_fail_open_on_bytes_the_charset_cannot_keep() -> None:
    raw = b"Content-Type: text/html; charset=utf-16\r\n\r\n" + "<a href=x>".encode("utf-16")
    result = rewrite_html_parts(raw + b"\x00", Rewriter())
    assert result.raw == raw + b"\x00"
    assert result.parts == (
        PartOutcome("1", False, "cannot decode as utf-16 without losing bytes"),
    )


def test_fail_open_when_the_rewrite_raises() -> None:
    def broken(html: str) -> str:
        raise RuntimeError("no mint today")

    raw = message(ALTERNATIVE)
    result = rewrite_html_parts(raw, broken)
    assert result.raw == raw
    assert [p.error for p in result.parts] == ["rewrite failed: RuntimeError: no mint today"] * 2


def test_unchanged_html_is_forwarded_byte_for_byte() -> None:
    raw = message(LATIN1_QP.replace("https://", "mailto:"))
    result = rewrite_html_parts(raw, Rewriter())
    assert result.raw is raw
    assert result.parts == (PartOutcome("1", False, None),)


def test_parts_without_headers_or_boundary_are_left_alone() -> None:
    for text in (
        "Content-Type: multipart/mixed\n\n--x\nContent-Type: text/html\n\n<a href='https://e.com/'>\n",
        "Content-Type: multipart/mixed; boundary=x\n\n--x\n\n<a href='https://e.com/'>x</a>\n--x--\n",
        "no header at all",
        "",
    ):
        raw = message(text)
        assert rewrite_html_parts(raw, Rewriter()).raw == raw


ODD_CHARSETS = [
    "utf-16", "utf-32", "utf-7", "base64", "rot13", "hex", "iso-2022-jp", "hz", "big5",
    "x-unknown", "utf-8", "koi8-r", '"charset=us-ascii"', "unicode-1-1-utf-7",
]  # fmt: skip
ODD_TRANSFERS = ["7bit", "8bit", "base64", "quoted-printable", "x-uue", "binary", ""]


def odd_part(charset: str, cte: str, junk: bytes) -> bytes:
    head = f"Content-Type: text/html; charset={charset}\r\nContent-Transfer-Encoding: {cte}\r\n"
    return head.encode() + b'\r\n<a href="https://e.com/">' + junk


odd_parts = st.builds(
    odd_part, st.sampled_from(ODD_CHARSETS), st.sampled_from(ODD_TRANSFERS), st.binary(max_size=200)
)
messages = st.one_of(
    st.binary(max_size=300),
    odd_parts,
    st.sampled_from([SIMPLE, ALTERNATIVE, NESTED, LATIN1_QP])
    .flatmap(
        lambda text: st.tuples(st.just(message(text)), st.integers(0, 2000), st.binary(max_size=8))
    )
    .map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]),
)


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(messages)
def test_never_raises_and_identity_changes_nothing(raw: bytes) -> None:
    assert rewrite_html_parts(raw, lambda html: html).raw == raw
    result = rewrite_html_parts(raw, Rewriter())
    assert len(result.parts) == len({p.path for p in result.parts})


def test_hostile_messages_stay_linear() -> None:
    many_parts = message(
        "Content-Type: multipart/mixed; boundary=b\n\n"
        + '--b\nContent-Type: text/html\n\n<a href="https://e.com/">x</a>\n' * 3_000
        + "--b--\n"
    )
    deep = nested_multipart(5_000)
    delimiters_only = message("Content-Type: multipart/mixed; boundary=b\n\n" + "--b\n" * 100_000)
    for raw in (many_parts, deep, delimiters_only):
        start = time.perf_counter()
        result = rewrite_html_parts(raw, Rewriter())
        assert time.perf_counter() - start < 5
    assert len(result.parts) == 0
    assert len(rewrite_html_parts(many_parts, lambda html: html).parts) == 3_000
