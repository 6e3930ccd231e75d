"""One rewrite for all recipients (relay/rewrite/copies.py): every copy made from the shared
pieces and its own fills is byte for byte what rewriting that copy on its own gives (the
relay's way before), for every corpus message and for HTML in every transfer encoding
and in charsets the fast path takes and the ones it leaves to the plain path."""

from __future__ import annotations

import base64
import quopri
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.message.limits import MessageLimits
from relay.message.mime import rewrite_html_parts
from relay.rewrite.copies import PartHole, Template, TokenHole
from relay.rewrite.honeypot import insert_honeypot
from relay.rewrite.links import Link, rewrite_links
from relay.rewrite.minting import LinkSettings, copy_body, mint, track_message
from relay.rewrite.pixel import insert_pixel
from tracker.config import SigningKey
from tracker.tokens import ClickClaims, OpenClaims, TokenMinter, mint_open_token, mint_token
from tracker.webhooks.events import HONEYPOT_LINK_INDEX, OPEN_LINK_INDEX

CORPUS = Path(__file__).resolve().parent / "data" / "corpus"
SETTINGS = LinkSettings(
    key=SigningKey("k1", "test-signing-key-0123456789abcdef0123"),
    base="http://pacme1.t.localhost:8080", sid="acme1", expires=2_000_000_000,
    hosts=("t.localhost",), honeypot=False, limits=MessageLimits(),
)


def rewritten_alone(link_settings: LinkSettings, raw: bytes, message_id: str) -> bytes:
    """One copy as the relay made it before: the whole walk and rewrite with its tokens."""
    count = 0

    def url(link: Link) -> str:
        return f"{link_settings.base}/c/{mint(link_settings, message_id, link)}"

    def rewrite(html: str) -> str:
        if link_settings.track_clicks:
            html = rewrite_part(html)
        if link_settings.track_opens:
            token = mint(link_settings, message_id, Link(OPEN_LINK_INDEX, "", ""))
            html = insert_pixel(html, f"{link_settings.base}/o/{token}")
        return html

    def rewrite_part(html: str) -> str:
        nonlocal count
        result = rewrite_links(html, url, tracking_hosts=link_settings.hosts,
                               first_index=count, max_links=1000 - count)
        count += len(result.links)
        if not link_settings.honeypot:
            return result.html
        honeypot = Link(HONEYPOT_LINK_INDEX, f"{link_settings.base}/", "")
        return insert_honeypot(result.html, url(honeypot)) or result.html

    return rewrite_html_parts(raw, rewrite).raw


def assert_copies_as_alone(raw: bytes, link_settings: LinkSettings = SETTINGS) -> Template:
    for fast in (True, False):
        tracked = track_message(link_settings, raw, fast=fast)
        for _ in range(2):
            message_id = str(uuid.uuid4())
            assert copy_body(link_settings, tracked, message_id) == rewritten_alone(
                link_settings, raw, message_id)
    return track_message(link_settings, raw).template


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(claims=st.builds(
    ClickClaims, st.text(max_size=40), st.integers(-(2**63), 2**63), st.text(max_size=300),
    st.text(max_size=20), st.integers(0, 2**40)))
def test_the_token_minter_mints_pyjwts_tokens(claims: ClickClaims) -> None:
    for key in (SETTINGS.key, SigningKey("k-ü \"x", "another-secret-0123456789abcdef0123")):
        assert TokenMinter(key).mint(claims) == mint_token(key, claims)
        opened = OpenClaims(claims.message_id, claims.project_sid, claims.expires)
        assert TokenMinter(key).mint_open(opened) == mint_open_token(key, opened)


# (clicks, honeypot, opens)
TRACKING = [(True, False, False), (True, True, False), (True, True, True), (False, False, True)]


@pytest.mark.parametrize("name", sorted(p.name for p in (CORPUS / "eml").glob("*.eml")))
@pytest.mark.parametrize(("clicks", "honeypot", "opens"), TRACKING)
def test_corpus_message(name: str, clicks: bool, honeypot: bool, opens: bool) -> None:
    raw = (CORPUS / "eml" / name).read_bytes()
    link_settings = LinkSettings(**{**SETTINGS.__dict__, "honeypot": honeypot,
                                    "track_clicks": clicks, "track_opens": opens})
    assert_copies_as_alone(raw, link_settings)


def html_message(html: str, charset: str, transfer: str, eol: bytes = b"\r\n") -> bytes:
    data = html.encode(charset)
    if transfer == "quoted-printable":
        body = quopri.encodestring(data.replace(b"\n", b"\r\n"))
    elif transfer == "base64":
        body = base64.encodebytes(data)
    else:
        body = data
    head = (f"From: a@acme.test\nSubject: hi\nMIME-Version: 1.0\n"
            f"Content-Type: text/html; charset={charset}\n"
            f"Content-Transfer-Encoding: {transfer}\n\n").encode()
    return (head + body).replace(b"\r\n", b"\n").replace(b"\n", eol)


NEWSLETTER = (CORPUS / "html" / "mimekit-xamarin3-marketo-newsletter.html").read_text()
TRANSFERS = ["7bit", "8bit", "quoted-printable", "base64"]


TEXT = {"utf-8": "Grüße – ü", "iso-8859-1": "Grüße ü", "shift_jis": "日本語",
        "utf-16": "Grüße – ü", "utf-7": "Grüße – ü"}


# UTF-16 text keeps its line ends in base64 only.
ENCODINGS = [(c, t) for c in sorted(TEXT) for t in TRANSFERS if c != "utf-16" or t == "base64"]


@pytest.mark.parametrize(("charset", "transfer"), ENCODINGS)
def test_html_in_every_encoding(charset: str, transfer: str) -> None:
    html = NEWSLETTER.replace("<body", f"<body><p>{TEXT[charset]}</p", 1)
    with_opens = LinkSettings(**{**SETTINGS.__dict__, "track_opens": True})
    for eol in (b"\r\n", b"\n"):
        for link_settings, tokens in ((SETTINGS, 25), (with_opens, 26)):
            template = assert_copies_as_alone(html_message(html, charset, transfer, eol),
                                              link_settings)
            if charset in ("utf-16", "utf-7"):  # the plain path: the part again per copy
                assert [type(h) for h in template.holes] == [PartHole]
            else:
                assert len(template.holes) == tokens
                assert not any(isinstance(h, PartHole) for h in template.holes)


def test_the_fast_path_cuts_the_part_at_each_token() -> None:
    raw = html_message(NEWSLETTER, "utf-8", "quoted-printable")
    template = assert_copies_as_alone(raw)
    assert all(isinstance(h, TokenHole) for h in template.holes)
    # The shared pieces hold everything but the tokens.
    assert sum(map(len, template.pieces)) > len(raw) - 25 * 200


def test_a_message_without_links_is_one_piece() -> None:
    raw = html_message("<p>no links here</p>", "utf-8", "8bit")
    template = assert_copies_as_alone(raw)
    assert template.pieces == (raw,) and template.holes == ()


LINK = st.builds(
    lambda path, text: f'<a href="https://example.com/{path}">{text}</a>',
    st.text("abcxyz0123-_/.", max_size=300), st.text("ab é€\n<>&", max_size=20),
)
FILLER = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    pieces=st.lists(st.tuples(FILLER, LINK), max_size=12),
    charset=st.sampled_from(["utf-8", "iso-8859-1", "windows-1252"]),
    transfer=st.sampled_from(TRANSFERS),
    eol=st.sampled_from([b"\r\n", b"\n"]),
)
def test_random_documents(pieces: list[tuple[str, str]], charset: str, transfer: str,
                          eol: bytes) -> None:
    html = "".join(f + link for f, link in pieces)
    html = html.encode(charset, "replace").decode(charset)
    if transfer == "7bit":
        html = html.encode("ascii", "replace").decode("ascii")
    assert_copies_as_alone(html_message(html, charset, transfer, eol))
