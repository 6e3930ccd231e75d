"""The HTML rewriter, continued (docs/mail.md): more of what is tracked and what is left
alone, byte for byte."""

from __future__ import annotations

import time

import pytest
from selectolax.lexbor import LexborHTMLParser

from relay.rewrite.links import ANCHOR_TEXT_LIMIT, Link, rewrite_links
from relay.rewrite.policy import list_unsubscribe_urls
from tests.test_rewrite import (
    OPT_OUT,
    SKIPPED,
    TRACKER,
    assert_only_hrefs_changed,
    mint,
    only_link,
    rewrite,
)


@pytest.mark.parametrize("html", [c[1] for c in SKIPPED], ids=[c[0] for c in SKIPPED])
def test_not_tracked(html: str) -> None:
    result = rewrite(html)
    assert result.links == ()
    assert result.html == html


@pytest.mark.parametrize("attribute", OPT_OUT)
def test_opt_out_attribute(attribute: str) -> None:
    for html in (
        f'<a {attribute} href="https://e.com/">x</a>',
        f'<a href="https://e.com/" {attribute}>x</a>',
        f'<!--[if mso]><v:roundrect {attribute} href="https://e.com/"></v:roundrect><![endif]-->',
    ):
        assert rewrite(html).links == ()


@pytest.mark.parametrize("attribute", ['clicktracking="on"', 'disable-tracking="false"'])
def test_opt_out_attribute_with_other_value_still_tracks(attribute: str) -> None:
    only_link(f'<a {attribute} href="https://e.com/">x</a>')


# --- Outlook: VML and conditional comments --------------------------------------------

BUTTON = """<div><!--[if mso]>
  <v:roundrect xmlns:v="urn:schemas-microsoft-com:vml"
    xmlns:w="urn:schemas-microsoft-com:office:word"
    href="https://example.com/buy?utm=1&amp;x=2" style="height:40px;width:200px;" arcsize="10%"
    strokecolor="#1e3650" fillcolor="#556270">
    <w:anchorlock/>
    <center style="color:#ffffff;font-family:sans-serif;">Buy  now</center>
  </v:roundrect>
<![endif]--><a href="https://example.com/buy?utm=1&amp;x=2"
style="background-color:#556270;mso-hide:all;">Buy now</a></div>"""


def test_vml_button_and_its_a_twin_are_two_links() -> None:
    result = rewrite(BUTTON)
    assert result.links == (
        Link(0, "https://example.com/buy?utm=1&x=2", "Buy now"),
        Link(1, "https://example.com/buy?utm=1&x=2", "Buy now"),
    )
    assert_only_hrefs_changed(BUTTON, result.html, result.links)
    assert result.html.count("<![endif]-->") == 1
    assert 'href="https://t.test/c/0" style="height:40px' in result.html


@pytest.mark.parametrize("shape", ["v:roundrect", "v:rect", "v:oval", "v:shape", "V:RECT"])
def test_vml_shapes_in_conditional_comments(shape: str) -> None:
    html = f'<!--[if gte mso 9]><{shape} href="https://e.com/{shape}"><center>Go</center></{shape}><![endif]-->'
    link = only_link(html)
    assert link.destination == f"https://e.com/{shape}"
    assert link.anchor_text == "Go"


def test_conditional_comment_variants() -> None:
    html = (
        '<!--[if (gte mso 9)|(IE)]><table><tr><td><a href="https://e.com/1">1</a><![endif]-->'
        '<!--[if !mso]><!--><a href="https://e.com/2">2</a><!--<![endif]-->'
        '<!--[if mso | IE]><v:rect href="https://e.com/3">3</v:rect><![endif]-->'
        '<!--[if mso]><a href="https://e.com/4">4</a>--!>'
    )
    result = rewrite(html)
    assert [link.destination for link in result.links] == [f"https://e.com/{n}" for n in "1234"]
    assert_only_hrefs_changed(html, result.html, result.links)


def test_links_in_and_out_of_conditional_comments_keep_document_order() -> None:
    html = (
        '<a href="https://e.com/a">a</a><!--[if mso]><v:rect href="https://e.com/b"></v:rect>'
        '<![endif]--><a href="https://e.com/c">c</a><!--[if mso]><a href="https://e.com/d">d</a>'
        "<![endif]-->"
    )
    result = rewrite(html)
    assert [link.destination[-1] for link in result.links] == ["a", "b", "c", "d"]
    assert [link.index for link in result.links] == [0, 1, 2, 3]


# --- link order, duplicates, caps -----------------------------------------------------


def test_duplicate_urls_are_two_links_with_two_indexes() -> None:
    html = '<a href="https://e.com/">one</a> <a href="https://e.com/">two</a>'
    result = rewrite(html)
    assert result.links == (Link(0, "https://e.com/", "one"), Link(1, "https://e.com/", "two"))
    assert (
        result.html == '<a href="https://t.test/c/0">one</a> <a href="https://t.test/c/1">two</a>'
    )


def test_first_index_and_max_links() -> None:
    html = "".join(f'<a href="https://e.com/{n}">{n}</a>' for n in range(5))
    result = rewrite(html, first_index=7, max_links=3)
    assert [(link.index, link.anchor_text) for link in result.links] == [
        (7, "0"),
        (8, "1"),
        (9, "2"),
    ]
    assert result.html.count(TRACKER) == 3
    assert result.html.endswith('<a href="https://e.com/3">3</a><a href="https://e.com/4">4</a>')
    assert rewrite(html, max_links=0).html == html


def test_default_cap_is_1000_links() -> None:
    html = '<a href="https://e.com/">x</a>' * 1005
    result = rewrite(html)
    assert len(result.links) == 1000
    assert result.html.count(TRACKER) == 1000


def test_tracking_hosts_are_normalised() -> None:
    html = '<a href="https://p1.t.test/c/1">a</a><a href="https://t.testing.example/">b</a>'
    result = rewrite_links(html, mint, tracking_hosts=["T.Test.:8080"])
    assert [link.destination for link in result.links] == ["https://t.testing.example/"]


def test_rewritten_document_is_left_alone() -> None:
    first = rewrite(BUTTON)
    again = rewrite(first.html)
    assert again.links == ()
    assert again.html == first.html


# --- the minted value inside the original quotes ----------------------------------------

AWKWARD = "https://t.test/c/a?x=1&y=\"2\"&z='3'"


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        (
            '<a href="https://e.com/">',
            "<a href=\"https://t.test/c/a?x=1&amp;y=&quot;2&quot;&amp;z='3'\">",
        ),
        (
            "<a href='https://e.com/'>",
            "<a href='https://t.test/c/a?x=1&amp;y=\"2\"&amp;z=&#39;3&#39;'>",
        ),
        (
            "<a href=https://e.com/>",
            "<a href=\"https://t.test/c/a?x=1&amp;y=&quot;2&quot;&amp;z='3'\">",
        ),
    ],
    ids=["double", "single", "unquoted"],
)
def test_minted_url_is_escaped_for_its_quotes(html: str, expected: str) -> None:
    result = rewrite_links(html, lambda link: AWKWARD)
    assert result.html == expected
    node = LexborHTMLParser(result.html).css_first("a")
    assert node is not None and node.attributes["href"] == AWKWARD


def test_unquoted_value_stays_unquoted_when_it_can() -> None:
    result = rewrite_links(
        "<a href=https://e.com/>x</a>", lambda link: "https://t.test/c/a.b_c~d&e"
    )
    assert result.html == "<a href=https://t.test/c/a.b_c~d&amp;e>x</a>"
    result = rewrite_links("<a href=https://e.com/>x</a>", lambda link: "https://t.test/c?t=1")
    assert result.html == '<a href="https://t.test/c?t=1">x</a>'


# --- anchor text ------------------------------------------------------------------------

ANCHORS = [
    (
        "collapsed",
        '<a href="https://e.com/">  Hi \n\n <b>brave</b>\tnew  world </a>',
        "Hi brave new world",
    ),
    ("entities", '<a href="https://e.com/">Fish&nbsp;&amp;&nbsp;chips</a>', "Fish & chips"),
    ("line-break", '<a href="https://e.com/">Read<br>more</a>', "Read more"),
    ("blocks", '<a href="https://e.com/"><div>One</div><div>Two</div></a>', "One Two"),
    ("image-only", '<a href="https://e.com/"> <img src="l.png" alt="Acme logo"> </a>', "Acme logo"),
    ("images-only", '<a href="https://e.com/"><img alt="A"><img alt=""><img alt="B"></a>', "A B"),
    ("text-beats-alt", '<a href="https://e.com/"><img alt="logo"> Shop</a>', "Shop"),
    ("image-without-alt", '<a href="https://e.com/"><img src="x.png"></a>', ""),
    ("area-alt", '<map><area href="https://e.com/" alt="Region"></map>', "Region"),
    ("empty", '<a href="https://e.com/"></a>', ""),
    ("clones", '<p><a href="https://e.com/">one<p>two</a>', "one two"),
    ("non-ascii", '<a href="https://e.com/">Größe ändern – jetzt</a>', "Größe ändern – jetzt"),
]


@pytest.mark.parametrize(("html", "anchor"), [c[1:] for c in ANCHORS], ids=[c[0] for c in ANCHORS])
def test_anchor_text(html: str, anchor: str) -> None:
    assert only_link(html).anchor_text == anchor


def test_anchor_text_is_cut_at_500_characters() -> None:
    words = " ".join(f"word{n}" for n in range(400))
    link = only_link(f'<a href="https://e.com/">{words}</a>')
    assert link.anchor_text == words[:ANCHOR_TEXT_LIMIT]
    assert len(link.anchor_text) == 500


def test_nested_vml_links_stay_cheap() -> None:
    # Nested shapes each carry an href: every anchor-text walk is bounded.
    depth = 800
    html = "<!--[if mso]>" + '<v:rect href="https://e.com/">x' * depth + "<![endif]-->"
    result = rewrite(html)
    assert len(result.links) == depth
    assert all(len(link.anchor_text) <= ANCHOR_TEXT_LIMIT for link in result.links)


# --- bounded work on hostile input ------------------------------------------------------

HOSTILE = [
    ("unclosed-tags", "<a " * 60_000),
    ("unclosed-quotes", '<a href="' * 60_000),
    ("unclosed-conditionals", "<!--[if mso]>" * 30_000 + '<a href="http://e.com/">x</a>'),
    ("conditionals-without-end", '<!--[if mso]><a href="http://e.com/">x' * 5_000),
    ("links-in-attribute-values", "<img alt='<a href=http://e.com/ " * 30_000),
    ("many-links", '<a href="http://e.com/">x</a>' * 20_000),
    ("entities", '<a href="http://e.com/?' + "&amp;&#38;&copy" * 20_000 + '">x</a>'),
    ("deep-nesting", "<div><span>" * 5_000 + '<a href="http://e.com/">x</a>'),
]


@pytest.mark.parametrize("html", [c[1] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_input_stays_linear(html: str) -> None:
    # Sizes at which a quadratic path would take minutes; linear work takes milliseconds.
    start = time.perf_counter()
    result = rewrite(html)
    assert time.perf_counter() - start < 5
    assert len(result.links) <= 1000
    assert_only_hrefs_changed(html, result.html, result.links)


def test_destination_too_long_for_a_token_is_left_untracked() -> None:
    from relay.rewrite.policy import MAX_DESTINATION_LENGTH

    long_url = "https://example.com/?q=" + "x" * MAX_DESTINATION_LENGTH
    html = f'<a href="{long_url}">long</a><a href="https://example.com/ok">ok</a>'
    result = rewrite_links(html, lambda link: f"https://t.example/c/{link.index}")
    assert [link.destination for link in result.links] == ["https://example.com/ok"]
    assert long_url in result.html


@pytest.mark.parametrize("char", ["x", "ä", "😀"])
def test_longest_tracked_destination_fits_in_a_token(char: str) -> None:
    from relay.rewrite.policy import MAX_DESTINATION_LENGTH
    from tracker.config import SigningKey
    from tracker.tokens import MAX_TOKEN_LENGTH, ClickClaims, mint_token

    longest = ""
    for n in range(MAX_DESTINATION_LENGTH, 0, -1):
        candidate = "https://example.com/" + char * n
        html = f'<a href="{candidate}">x</a>'
        if rewrite_links(html, lambda link: "https://t.example/c/x").links:
            longest = candidate
            break
    key = SigningKey("k1", "s" * 40)
    claims = ClickClaims("0" * 36, 999, longest, "abcdefgh", 4_102_444_800)
    assert len(mint_token(key, claims)) <= MAX_TOKEN_LENGTH


def test_list_unsubscribe_urls_are_the_bracketed_http_ones() -> None:
    urls = list_unsubscribe_urls([
        "<mailto:u@l.example?subject=unsub>, <https://l.example/s/1?a=1&b=2>",
        "< http://l.example/civicrm/mailing/optout?reset=1 >, <ftp://l.example/x>",
    ])
    assert urls == {"https://l.example/s/1?a=1&b=2",
                    "http://l.example/civicrm/mailing/optout?reset=1"}
    assert list_unsubscribe_urls(["no brackets https://l.example/s/1"]) == frozenset()


def test_a_destination_named_untracked_is_left_alone() -> None:
    html = ('<a href=" https://l.example/s/1?a=1&amp;b=2">out</a>'
            '<a href="https://l.example/s/1?a=1">in</a>')
    result = rewrite(html, untracked={"https://l.example/s/1?a=1&b=2"})
    assert [link.destination for link in result.links] == ["https://l.example/s/1?a=1"]
    assert result.html.startswith('<a href=" https://l.example/s/1?a=1&amp;b=2">out</a>')
