"""The HTML rewriter, rule by rule (docs/mail.md): what is tracked, what is left alone,
and that nothing but the href values changes."""

from __future__ import annotations

import pytest
from selectolax.lexbor import LexborHTMLParser

from relay.rewrite.links import Link, RewriteResult, rewrite_links
from relay.rewrite.scan import conditional_regions, decode_attribute

TRACKER = "https://t.test/c/"
C0_AND_SPACE = "".join(map(chr, range(0x21)))


def mint(link: Link) -> str:
    return f"{TRACKER}{link.index}"


def rewrite(html: str, **options: object) -> RewriteResult:
    options.setdefault("tracking_hosts", ["t.test"])
    return rewrite_links(html, mint, **options)  # type: ignore[arg-type]


def assert_only_hrefs_changed(before: str, after: str, links: tuple[Link, ...]) -> None:
    """``after`` is ``before`` with each tracked href value replaced by its minted URL,
    and lexbor reads exactly those URLs back as hrefs. Shared by the other test modules."""
    pos = 0
    rest = after
    for link in links:
        minted = mint(link)
        at = rest.index(minted)
        head, rest = rest[:at], rest[at + len(minted) :]
        assert before.startswith(head, pos), f"text before link {link.index} changed"
        pos += len(head)
        # The old value ends at the first character of what follows the new one: a
        # closing quote, or the blank or ">" that ends an unquoted value.
        end = before.index(rest[0], pos) if rest else len(before)
        # A URL parser strips C0 controls and spaces around it, and tabs and newlines.
        old = decode_attribute(before[pos:end]).strip(C0_AND_SPACE)
        assert old.replace("\t", "").replace("\n", "").replace("\r", "") == link.destination
        pos = end
    assert before[pos:] == rest, "text after the last link changed"
    # Outlook reads conditional comments as markup: links inside them are hrefs once the
    # comments the rewriter looks into are opened.
    starts = [start for start, _ in conditional_regions(after)]
    ends = [start + 4 for start in starts]
    pieces = [after[a:b] for a, b in zip([0, *ends], [*starts, len(after)], strict=True)]
    revealed = "<!-X".join(pieces)
    hrefs = set()
    for document in (after, revealed):
        hrefs |= {node.attributes.get("href") for node in LexborHTMLParser(document).css("[href]")}
    assert {mint(link) for link in links} <= hrefs


def only_link(html: str) -> Link:
    result = rewrite(html)
    assert len(result.links) == 1, result.links
    assert_only_hrefs_changed(html, result.html, result.links)
    return result.links[0]


# --- what is tracked, and the exact output -------------------------------------------

EXACT = [
    (
        "double-quoted",
        '<a href="https://example.com/a">A</a>',
        '<a href="https://t.test/c/0">A</a>',
    ),
    (
        "single-quoted",
        "<a href='https://example.com/a'>A</a>",
        "<a href='https://t.test/c/0'>A</a>",
    ),
    ("unquoted", "<a href=https://example.com/a>A</a>", "<a href=https://t.test/c/0>A</a>"),
    ("unquoted-last", "<a x=1 href=https://example.com/a>", "<a x=1 href=https://t.test/c/0>"),
    (
        "spaces-around-equals",
        '<a  href = "https://example.com/a" >A</a>',
        '<a  href = "https://t.test/c/0" >A</a>',
    ),
    (
        "tab-before-equals",
        "<a href\t=\t'https://example.com/a'>",
        "<a href\t=\t'https://t.test/c/0'>",
    ),
    ("uppercase", '<A HREF="https://example.com/a">A</A>', '<A HREF="https://t.test/c/0">A</A>'),
    ("mixed-case", '<A Href="https://example.com/a">A</a>', '<A Href="https://t.test/c/0">A</a>'),
    (
        "attributes-around",
        '<a class="b" href="http://example.com/" target=_blank style="x">',
        '<a class="b" href="https://t.test/c/0" target=_blank style="x">',
    ),
    (
        "no-blank-after-value",
        '<a href="http://e.com/"title="t">x</a>',
        '<a href="https://t.test/c/0"title="t">x</a>',
    ),
    ("slash-separator", '<a x="1"/href="http://e.com/">', '<a x="1"/href="https://t.test/c/0">'),
    (
        "duplicate-href-first-wins",
        '<a href="https://example.com/1" href="https://example.com/2">x</a>',
        '<a href="https://t.test/c/0" href="https://example.com/2">x</a>',
    ),
    (
        "area",
        '<map name="m"><area shape="rect" coords="0,0,9,9" href="https://e.com/r" alt=R></map>',
        '<map name="m"><area shape="rect" coords="0,0,9,9" href="https://t.test/c/0" alt=R></map>',
    ),
    (
        "table-without-tbody",
        '<table><tr><td><a href="https://example.com/">x</a></td></tr></table>',
        '<table><tr><td><a href="https://t.test/c/0">x</a></td></tr></table>',
    ),
    (
        "entities-and-doctype-untouched",
        '<!DOCTYPE html>\n<!-- note --><p>&nbsp;&copy; &amp;<a href="https://e.com/?a=1&amp;b=2">'
        "Fish &amp; chips</a>&lt;&gt;</p>",
        '<!DOCTYPE html>\n<!-- note --><p>&nbsp;&copy; &amp;<a href="https://t.test/c/0">'
        "Fish &amp; chips</a>&lt;&gt;</p>",
    ),
    (
        "crlf",
        '<html>\r\n<body>\r\n<a\r\nhref="https://example.com/crlf"\r\n>x</a>\r\n</body>\r\n',
        '<html>\r\n<body>\r\n<a\r\nhref="https://t.test/c/0"\r\n>x</a>\r\n</body>\r\n',
    ),
    (
        "misnested",
        '<b><a href="https://example.com/x">bold <i>italic</b> tail</i></a>',
        '<b><a href="https://t.test/c/0">bold <i>italic</b> tail</i></a>',
    ),
    (
        "foster-parented",
        '<table><a href="https://example.com/t">in</a><tr><td>c</table>',
        '<table><a href="https://t.test/c/0">in</a><tr><td>c</table>',
    ),
    (
        "mso-conditional-a",
        '<!--[if mso]><a href="https://example.com/o">Outlook</a><![endif]-->',
        '<!--[if mso]><a href="https://t.test/c/0">Outlook</a><![endif]-->',
    ),
]


@pytest.mark.parametrize(("html", "expected"), [c[1:] for c in EXACT], ids=[c[0] for c in EXACT])
def test_tracked_href_is_replaced_and_nothing_else(html: str, expected: str) -> None:
    result = rewrite(html)
    assert result.html == expected
    assert len(result.links) == 1
    assert_only_hrefs_changed(html, result.html, result.links)


# --- destinations as a browser follows them -------------------------------------------

DESTINATIONS = [
    ("entity-amp", "https://e.com/?a=1&amp;b=2", "https://e.com/?a=1&b=2"),
    ("entity-numeric", "https://e.com/?a=1&#38;b=2&#x26;c=3", "https://e.com/?a=1&b=2&c=3"),
    ("entity-scheme", "&#104;ttps://e.com/p", "https://e.com/p"),
    ("entity-quot", "https://e.com/?q=&quot;x&quot;", 'https://e.com/?q="x"'),
    ("legacy-entity-kept", "https://e.com/?a=1&copy=2&not=3", "https://e.com/?a=1&copy=2&not=3"),
    ("bare-amp", "https://e.com/?a=1&b=2", "https://e.com/?a=1&b=2"),
    ("surrounding-blanks", "  \n https://e.com/p \t", "https://e.com/p"),
    (
        "embedded-newlines",
        "https://e.com/very\n/long\r\n/path\t/x",
        "https://e.com/very/long/path/x",
    ),
    ("query-and-fragment", "https://e.com/a%20b?x=%2F#frag", "https://e.com/a%20b?x=%2F#frag"),
    ("idn-host", "https://bücher.example/straße?q=ü", "https://bücher.example/straße?q=ü"),
    ("punycode-host", "https://xn--bcher-kva.example/", "https://xn--bcher-kva.example/"),
    (
        "url-in-query",
        "https://r.e.com/?u=https://d.e.com/p?a=1%26b=2",
        "https://r.e.com/?u=https://d.e.com/p?a=1%26b=2",
    ),
    ("at-signs", "https://user@e.com/p@x?mail=a@b.c#f@g", "https://user@e.com/p@x?mail=a@b.c#f@g"),
    ("ours-as-userinfo", "https://t.test@evil.example/", "https://t.test@evil.example/"),
    ("uppercase-scheme", "HTTP://E.COM/", "HTTP://E.COM/"),
    ("port", "http://e.com:8080/x", "http://e.com:8080/x"),
    ("ipv6", "http://[2001:db8::1]/x", "http://[2001:db8::1]/x"),
    ("backslashes", "https:\\\\e.com\\p", "https:\\\\e.com\\p"),
    ("soft-hyphen", "https://e&shy;x.com/", "https://e\xadx.com/"),
]


@pytest.mark.parametrize(
    ("href", "destination"), [c[1:] for c in DESTINATIONS], ids=[c[0] for c in DESTINATIONS]
)
def test_destination_is_what_a_browser_follows(href: str, destination: str) -> None:
    assert only_link(f'<a href="{href}">x</a>').destination == destination


# --- what is not tracked ---------------------------------------------------------------

SKIPPED = [
    ("mailto", '<a href="mailto:a@example.com">m</a>'),
    ("mailto-query", '<a href="mailto:a@e.com?subject=Hi%20there&amp;cc=b@e.com">m</a>'),
    ("tel", '<a href="tel:+15551234">t</a>'),
    ("sms", '<a href="sms:+15551234">s</a>'),
    ("javascript", '<a href="javascript:void(0)">j</a>'),
    ("javascript-blanked", '<a href=" java&#x09;script:alert(1)">j</a>'),
    ("data", '<a href="data:text/html,hi">d</a>'),
    ("ftp", '<a href="ftp://e.com/f">f</a>'),
    ("fragment", '<a href="#top">top</a>'),
    ("empty", '<a href="">e</a>'),
    ("no-value", "<a href>e</a>"),
    ("relative-path", '<a href="/account">r</a>'),
    ("relative-dot", '<a href="./page.html">r</a>'),
    ("relative-bare", '<a href="page.html">r</a>'),
    ("scheme-less-host", '<a href="twitter.com/acme">r</a>'),
    ("protocol-relative", '<a href="//e.com/vcard">r</a>'),
    ("bare-scheme", '<a href="http://">b</a>'),
    ("handlebars", '<a href="{{action_url}}">p</a>'),
    ("triple-stache", '<a href="{{{c2a_link}}}">p</a>'),
    ("placeholder-in-url", '<a href="https://e.com/?id={{user_id}}">p</a>'),
    ("placeholder-host", '<a href="https://{{domain}}/p">p</a>'),
    ("mailchimp-merge-tag", '<a href="*|UNSUB|*">p</a>'),
    ("mailchimp-in-url", '<a href="https://e.com/?e=*|EMAIL|*">p</a>'),
    ("bracket-tag", '<a href="[Unsubscribe]">p</a>'),
    ("asp-tag", '<a href="<%asm_group_unsubscribe_raw_url%>">p</a>'),
    ("liquid", '<a href="https://e.com/{% raw %}x">p</a>'),
    ("unsubscribe", '<a href="https://e.com/unsubscribe?u=1">u</a>'),
    ("unsubscribe-any-case", '<a href="https://e.com/List-UnSubscribe">u</a>'),
    ("unsubscribe-percent-encoded", '<a href="https://e.com/%75nsubscribe">u</a>'),
    ("unsubscribe-in-query", '<a href="https://e.com/p?action=UNSUBSCRIBE">u</a>'),
    ("tracking-host", '<a href="https://t.test/c/abc">o</a>'),
    ("tracking-subdomain", '<a href="http://pacme1.t.test:8080/c/abc">o</a>'),
    ("tracking-host-case-and-dot", '<a href="HTTPS://T.TEST./c/abc">o</a>'),
    ("tracking-host-userinfo", '<a href="https://someone@t.test/c/abc">o</a>'),
    ("link-element", '<link rel="stylesheet" href="https://e.com/s.css">'),
    ("base-element", '<base href="https://e.com/">'),
    ("img", '<img src="https://e.com/i.png" alt="i">'),
    ("form", '<form action="https://e.com/post"><input type=submit></form>'),
    ("div-with-href", '<div href="https://e.com/">x</div>'),
    ("unterminated-tag", '<p>x</p><a href="https://e.com/"'),
    ("unterminated-quote", '<a href="https://e.com/>x</a>'),
    ("plain-comment", '<!-- <a href="https://e.com/">old</a> -->'),
    ("comment-with-if-text", '<!-- [if mso]><a href="https://e.com/">x</a> -->'),
    (
        "conditional-inside-comment",
        '<!-- x <!--[if mso]><a href="https://e.com/">x</a><![endif]-->',
    ),
    ("script", "<script>var a = '<a href=\"https://e.com/\">x</a>';</script>"),
    (
        "script-with-conditional",
        "<script>s='<!--[if mso]><a href=\"https://e.com/\">x</a><![endif]-->'</script>",
    ),
    ("style", '<style>/* <a href="https://e.com/"> */</style>'),
    ("textarea", '<textarea><a href="https://e.com/">x</a></textarea>'),
    (
        "textarea-with-conditional",
        '<textarea><!--[if mso]><a href="https://e.com/">x</a><![endif]--></textarea>',
    ),
    ("title", '<title><a href="https://e.com/">x</a></title>'),
    ("attribute-value", "<img alt='<a href=\"https://e.com/\">x</a>'>"),
    (
        "conditional-in-attribute",
        "<div title='<!--[if mso]><a href=\"https://e.com/\">x</a><![endif]-->'>",
    ),
    ("template", '<template><a href="https://e.com/">x</a></template>'),
    ("svg-cdata", '<svg><![CDATA[ <a href="https://e.com/">x</a> ]]></svg>'),
]

OPT_OUT = [
    "data-lm-no-track",
    'data-lm-no-track="true"',
    'clicktracking="off"',
    "clicktracking=OFF",
    "data-pm-no-track",
    "ses:no-track",
    'disable-tracking="true"',
    "mautic:disable-tracking",
    "mc:disable-tracking",
    'data-msys-clicktrack="0"',
    "DATA-LM-NO-TRACK",
]
