"""Properties of the rewriter over arbitrary HTML-ish text: it never raises, it changes
nothing but href values, and a rewritten document has nothing left to rewrite."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.rewrite.links import Link, rewrite_links
from tests.test_rewrite import assert_only_hrefs_changed, mint

# fmt: off
FRAGMENTS = [
    "<a ", "<A ", "<a\n", "<area ", "<v:roundrect ", "<v:rect ", "</v:rect>", "<link ", "<img ",
    "href", "HREF", "href=", " href = ", "=", '"', "'", ">", "/>", "/", " ", "\n", "\r\n", "\t",
    "</a>", "<p>", "</p>", "<b>", "</b>", "<i>", "<table>", "<tr>", "<td>", "</table>", "<!--",
    "-->", "--!>", "<!-->", "<!--[if mso]>", "<![endif]-->", "<!--[if !mso]><!-->",
    "<!DOCTYPE html>", "<!", "<?", "</", "<script>", "</script>", "<style>", "</style>",
    "<textarea>", "</textarea>", "<title>", "<template>", "<svg>", "<![CDATA[", "]]>",
    "<select>", "<plaintext>", "<noscript>", "<br>", "<center>", "&amp;", "&", "&quot;",
    "&#104;", "&#x0;", "&copy=", "&nbsp;", "\x00", "\udc80", "http://x.example/",
    "https://ex.example/p?q=1&r=2#f", "HTTPS://EX.EXAMPLE", "mailto:a@b", "#", "{{url}}",
    "unsubscribe", "  https://e.example/ ", "data-lm-no-track", "alt=", "clicktracking=off",
    "ü", "–", "\u2028", "\x01", "\x0c", "\x1f",
]
# fmt: on
html_ish = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=60).map(
    "".join
)
URLS = [
    "https://e.example/", "http://e.example/x?a=1&amp;b=2", " \x01http://e.example/\n",
    "&#104;ttps://e.example/", "https://p1.t.test/c/old", "mailto:a@e.example",
]  # fmt: skip
# A document of links in every quoting style, so that many examples do track something.
link_soup = st.lists(
    st.tuples(
        st.sampled_from(["a", "A", "area", "v:rect"]),
        st.sampled_from(['"', "'", ""]),
        st.sampled_from(URLS),
        st.sampled_from(FRAGMENTS),
    ),
    max_size=12,
).map(lambda items: "".join(f"<{t} href={q}{u}{q}>{f}" for t, q, u, f in items))
documents = st.one_of(html_ish, link_soup)
SETTINGS = settings(max_examples=300, derandomize=True, deadline=None, database=None)


def rewrite(html: str, max_links: int = 1000) -> tuple[str, tuple[Link, ...]]:
    result = rewrite_links(html, mint, tracking_hosts=["t.test"], max_links=max_links)
    return result.html, result.links


@SETTINGS
@given(documents)
def test_only_href_values_change(html: str) -> None:
    new, links = rewrite(html)
    assert_only_hrefs_changed(html, new, links)
    assert [link.index for link in links] == list(range(len(links)))


@SETTINGS
@given(documents)
def test_rewriting_twice_changes_nothing(html: str) -> None:
    once, _ = rewrite(html)
    twice, links = rewrite(once)
    assert links == ()
    assert twice == once


@SETTINGS
@given(documents, st.integers(min_value=0, max_value=3))
def test_cap_leaves_the_rest_untouched(html: str, cap: int) -> None:
    capped, links = rewrite(html, max_links=cap)
    _, all_links = rewrite(html)
    assert links == all_links[:cap]
    assert_only_hrefs_changed(html, capped, links)
