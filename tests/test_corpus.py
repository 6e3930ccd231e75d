"""Every document and message of the sample corpus in tests/data/corpus (real templates and
real mail, see its SOURCES.md) goes through the rewriter: only href values change, every other part
goes out byte for byte, the MIME structure stays, and the number of tracked links per
file is pinned so that a change in what counts as a link shows up here."""

from __future__ import annotations

import email
import email.policy
from collections import Counter
from email.message import Message

import pytest

from relay.message.body import decode_text
from relay.message.mime import rewrite_html_parts
from relay.rewrite.links import find_links, rewrite_links
from relay.rewrite.policy import normalise_hosts, skip_reason
from tests.conftest import CORPUS
from tests.test_mime import Rewriter
from tests.test_rewrite import assert_only_hrefs_changed, mint

# Tracked links per document. Zero where every link is relative, a placeholder, a bare
# "http://" or a mailto (see KNOWINGLY_UNTRACKED).
HTML_LINKS = {
    "html/antwort-three-cols-images.html": 1,
    "html/caniemail-html-anchor-links.html": 0,
    "html/caniemail-html-base.html": 3,
    "html/caniemail-html-image-maps.html": 1,
    "html/caniemail-html-mailto-links.html": 1,
    "html/caniemail-html-target.html": 6,
    "html/cerberus-fluid.html": 1,
    "html/cerberus-hybrid.html": 3,
    "html/cerberus-responsive.html": 3,
    "html/email-boilerplate.html": 1,
    "html/konsav-explorational.html": 15,
    "html/konsav-general.html": 9,
    "html/leemunroe-email-inlined.html": 3,
    "html/leemunroe-email.html": 3,
    "html/mailgun-action.html": 2,
    "html/mailgun-alert.html": 2,
    "html/mailgun-billing.html": 1,
    "html/mimekit-google-security-alert.html": 4,
    "html/mimekit-large-whatwg-spec-page.html": 1,
    "html/mimekit-papercut-outlook-word.html": 3,
    "html/mimekit-xamarin3-marketo-newsletter.html": 25,
    "html/postmark-basic-full-example.html": 6,
    "html/postmark-basic-full-password-reset.html": 1,
    "html/postmark-basic-full-receipt.html": 2,
    "html/postmark-basic-full-trial-expiring.html": 1,
    "html/postmark-basic-full-welcome.html": 1,
    "html/postmark-plain-invoice-noninlined.html": 1,
    "html/sendgrid-call-to-action.html": 0,
    "html/sendgrid-news-feed.html": 0,
    "html/sendgrid-paste-digest.html": 3,
    "html/sendgrid-special-sale.html": 0,
    "html/sendwithus-cleave-survey.html": 0,
    "html/sendwithus-go-survey.html": 0,
    "html/sendwithus-goldstar-invoice.html": 1,
    "html/sendwithus-mantra-receipt.html": 0,
    "html/sendwithus-meow-welcome.html": 1,
    "html/sendwithus-narrative-survey.html": 0,
    "html/sendwithus-neopolitan-welcome.html": 0,
    "html/sendwithus-oxygen-welcome.html": 0,
    "html/sendwithus-skyline-survey.html": 0,
    "mjml/mjml-accordion.html": 0,
    "mjml/mjml-carousel.html": 0,
    "mjml/mjml-group.html": 0,
    "mjml/mjml-hero.html": 1,
    "mjml/mjml-navbar.html": 4,
    "mjml/mjml-social.html": 8,
    "mjml/mjml-wrapper.html": 0,
    "mjml/racoon-bench.html": 17,
}
# Tracked links per message, over all its text/html body parts.
EML_LINKS = {
    "eml/enmime-bad-charset-param.eml": 0,
    "eml/enmime-bad-cte-base64.eml": 0,
    "eml/enmime-ctype-bug.eml": 9,
    "eml/enmime-html-as-attachment.eml": 0,  # the html is an attachment
    "eml/flanker-enclosed-rfc822.eml": 0,  # the html is inside an attached message
    "eml/flanker-long-links.eml": 2,
    "eml/flanker-office365-bounce.eml": 3,
    "eml/inbucket-gmail.eml": 0,
    "eml/inbucket-outlook.eml": 0,
    "eml/mail-cte-8bits-latin1.eml": 73,
    "eml/mail-cte-bogus-text-html.eml": 2,
    "eml/mail-cte-empty-big5.eml": 1,
    "eml/mail-cte-quoted-printable-with-space.eml": 1,
    "eml/mail-windows-1251-qp.eml": 1,
    "eml/mailparser-nested-alternatives.eml": 0,
    "eml/mailparser-nodemailer-full.eml": 0,
    "eml/mailparser-outofmemory-1mb-html.eml": 3,
    "eml/mimekit-bounce-base64-html.eml": 0,  # the html is inside the returned message
    "eml/phpmmp-infusionsoft-tracked.eml": 12,
    "eml/phpmmp-x-mac-cyrillic.eml": 10,
    "eml/postal-sparkpost-newsletter.eml": 11,
    "eml/rspamd-href-spaces-around-equals.eml": 1,
    "eml/rspamd-koi8r-qp.eml": 0,
    "eml/rspamd-nested-encoded-redirect.eml": 1,
    "eml/rspamd-obfuscated-href.eml": 1,
    "eml/rspamd-schemeless-email-href.eml": 0,
    "eml/rspamd-windows-1251-nonascii-mailto.eml": 0,
    "eml/spamassassin-badmime-binary.eml": 13,
    "eml/spamassassin-nested-rfc822.eml": 0,  # the html is inside attached messages
    "eml/spamassassin-utf16-html.eml": 0,
    "eml/spamscope-fr-newsletter-related.eml": 7,
    "eml/spamscope-gb2312-base64-html.eml": 1,
    "eml/spamscope-mailchimp-newsletter.eml": 10,
    "eml/spamscope-ru-related-unquoted-hrefs.eml": 9,
    "eml/talon-outlook-reply.eml": 1,
}
# Why the link elements lexbor finds in the corpus are not tracked, summed over all files.
# "relative": "#" anchors, paths, {{placeholders}} and <%…%> tags, "twitter.com" without
# a scheme, a "//host" vcard link; "no host": the sendwithus templates' bare "http://".
KNOWINGLY_UNTRACKED = {
    "relative": 795,
    "no host": 96,
    "scheme mailto": 17,
    "empty": 8,
    "unsubscribe": 7,
    "scheme tel": 1,
}


def corpus_files(pattern: str) -> list[str]:
    return sorted(str(p.relative_to(CORPUS)) for p in CORPUS.glob(pattern))


def test_every_corpus_file_is_listed() -> None:
    assert corpus_files("html/*.html") + corpus_files("mjml/*.html") == sorted(HTML_LINKS)
    assert corpus_files("eml/*.eml") == sorted(EML_LINKS)


@pytest.mark.parametrize("name", sorted(HTML_LINKS))
def test_html_document(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    html, _ = decode_text(data, None)
    result = rewrite_links(html, mint, tracking_hosts=["t.test"])
    assert len(result.links) == HTML_LINKS[name]
    assert_only_hrefs_changed(html, result.html, result.links)
    assert rewrite_links(result.html, mint, tracking_hosts=["t.test"]).links == ()


@pytest.mark.parametrize("name", sorted(EML_LINKS))
def test_message(name: str) -> None:
    raw = (CORPUS / name).read_bytes()
    rewriter = Rewriter()
    result = rewrite_html_parts(raw, rewriter)
    assert len(rewriter.links) == EML_LINKS[name]
    assert [p.error for p in result.parts if p.error] == []
    before, after = parse(raw), parse(result.raw)
    assert structure(before) == structure(after)
    rewritten = []
    for old, new in zip(before.walk(), after.walk(), strict=True):
        if old.is_multipart():
            assert old.preamble == new.preamble and old.epilogue == new.epilogue
        elif old.as_bytes() != new.as_bytes():
            rewritten.append(old)
            assert old.get_content_type() == "text/html"
            check_rewritten_part(old, new, rewriter)
    assert len(rewritten) == sum(p.rewritten for p in result.parts)
    if len(rewritten) == 1 and old_cte(rewritten[0]) == old_cte_after(after, rewritten[0]):
        assert_change_confined(raw, result.raw, rewritten[0])


def old_cte(part: Message) -> str | None:
    return part.get("Content-Transfer-Encoding")


def old_cte_after(after: Message, old: Message) -> str | None:
    for part in after.walk():
        if part.get_content_type() == "text/html" and part.items()[:1] == old.items()[:1]:
            return part.get("Content-Transfer-Encoding")
    return None


def assert_change_confined(raw: bytes, new_raw: bytes, part: Message) -> None:
    """The bytes that differ all lie inside that part's body."""
    prefix = common_prefix(raw, new_raw)
    suffix = common_prefix(raw[prefix:][::-1], new_raw[prefix:][::-1])
    encoded = (old_cte(part) or "").strip().lower() in ("base64", "quoted-printable")
    body = str(part.get_payload()).encode("ascii") if encoded else part.get_payload(decode=True)
    assert isinstance(body, bytes)
    start = raw.find(body)
    assert 0 <= start <= prefix
    assert len(raw) - suffix <= start + len(body)


def common_prefix(a: bytes, b: bytes) -> int:
    size = 0
    step = 1 << 16
    while step:
        if a[size : size + step] == b[size : size + step] and size + step <= min(len(a), len(b)):
            size += step
        else:
            step >>= 1
    return size


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def structure(message: Message) -> list[tuple[str, str | None, str | None, int]]:
    return [
        (
            part.get_content_type(),
            part.get_boundary(),
            part.get_content_disposition(),
            len(part.get_payload()) if part.is_multipart() else -1,
        )
        for part in message.walk()
    ]


def check_rewritten_part(old: Message, new: Message, rewriter: Rewriter) -> None:
    """Same headers (but a transfer encoding that had to become quoted-printable), no line
    over 998 octets, and the decoded HTML differs only in the tracked href values."""
    assert [kv for kv in old.items() if kv[0].lower() != "content-transfer-encoding"] == [
        kv for kv in new.items() if kv[0].lower() != "content-transfer-encoding"
    ]
    body = new.get_payload()
    assert isinstance(body, str)
    assert max(len(line) for line in body.encode("utf-8", "surrogateescape").splitlines()) <= 998
    old_bytes, new_bytes = old.get_payload(decode=True), new.get_payload(decode=True)
    assert isinstance(old_bytes, bytes) and isinstance(new_bytes, bytes)
    charset = old.get_param("charset")
    before, codec = decode_text(old_bytes, charset if isinstance(charset, str) else None)
    after = new_bytes.decode(codec, "surrogateescape")
    links = tuple(link for link in rewriter.links if mint(link) in after)
    assert links
    assert_only_hrefs_changed(before, after, links)


def test_knowingly_untracked_links() -> None:
    """Every link element the corpus has that is not tracked, by reason."""
    hosts = normalise_hosts(["t.test"])
    reasons: Counter[str] = Counter()
    for html in corpus_html():
        for candidate in find_links(html):
            reason = "opt-out" if candidate.opted_out else skip_reason(candidate.destination, hosts)
            if reason is not None:
                reasons[reason] += 1
    assert dict(reasons) == KNOWINGLY_UNTRACKED


def corpus_html() -> list[str]:
    documents = [decode_text((CORPUS / name).read_bytes(), None)[0] for name in sorted(HTML_LINKS)]

    def collect(html: str) -> str:
        documents.append(html)
        return html

    for name in sorted(EML_LINKS):
        rewrite_html_parts((CORPUS / name).read_bytes(), collect)
    return documents
