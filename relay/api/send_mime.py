"""The RFC 5322 message of an API send: what ``SendMailRequest`` says, as the bytes an SMTP
client would have submitted (docs/api.md).

Built with the standard library's ``EmailMessage`` (policy SMTP: CRLF line ends; 7-bit
bodies, quoted-printable where needed, so that any upstream takes them). Routing and
tracking go in as the SMTP control headers, which the pipeline reads and removes as it
does for a mail that came in over SMTP."""

from __future__ import annotations

import re
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from relay.api.send_request import SendMailRequest
from relay.errors import BadInput
from relay.submission.controls import (
    ROUTE_HEADER,
    TAG_HEADER,
    TRACK_CLICKS_HEADER,
    TRACK_OPENS_HEADER,
)

_ASCII_POLICY = email_policy.SMTP.clone(cte_type="7bit")
# A non-ASCII address can only be written as UTF-8 (RFC 6532); the upstream needs SMTPUTF8.
_UTF8_POLICY = email_policy.SMTPUTF8.clone(cte_type="7bit")
MAX_LINE = 998  # RFC 5322 §2.1.1
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not 7bit-safe text


def build_message(req: SendMailRequest) -> bytes:
    """The message with its control headers; Bcc recipients are in the envelope only."""
    addresses = (req.sender, *req.to, *req.cc, *req.reply_to)
    ascii_only = all(a.addr_spec.isascii() for a in addresses)
    msg = EmailMessage(policy=_ASCII_POLICY if ascii_only else _UTF8_POLICY)
    msg["From"] = req.sender
    msg["To"] = req.to
    if req.cc:
        msg["Cc"] = req.cc
    if req.reply_to:
        msg["Reply-To"] = req.reply_to
    msg["Subject"] = req.subject
    given = {name.lower() for name in req.headers}
    if "date" not in given:
        msg["Date"] = formatdate(usegmt=True)
    if "message-id" not in given:
        msg["Message-ID"] = make_msgid(domain=_ascii_domain(req.sender.domain))
    for name, value in (*req.headers.items(), *control_headers(req)):
        msg[name] = value
    _add_bodies(msg, req)
    return msg.as_bytes()


def control_headers(req: SendMailRequest) -> list[tuple[str, str]]:
    """The request's routing, tracking, tag and metadata as SMTP control headers."""
    out = []
    if req.route:
        out.append((ROUTE_HEADER, req.route))
    if req.track_clicks is not None:
        out.append((TRACK_CLICKS_HEADER, "true" if req.track_clicks else "false"))
    if req.track_opens is not None:
        out.append((TRACK_OPENS_HEADER, "true" if req.track_opens else "false"))
    if req.tag:
        out.append((TAG_HEADER, req.tag))
    out += [(f"X-LM-Metadata-{key}", value) for key, value in req.metadata.items()]
    return out


def check_control_clash(req: SendMailRequest, prefix: str = "") -> None:
    """A control header given in ``headers`` and through a field as well is ambiguous."""
    from_fields = {name.lower() for name, _ in control_headers(req)}
    for name in req.headers:
        if name.lower() in from_fields:
            where = f"{prefix}headers.{name}"
            raise BadInput(where, f"{where}: also set through a request field; give it once")


def _add_bodies(msg: EmailMessage, req: SendMailRequest) -> None:
    if req.text is not None:
        msg.set_content(req.text, charset="utf-8", cte=_cte(req.text))
    if req.html is not None:
        if req.text is None:
            msg.set_content(req.html, subtype="html", charset="utf-8", cte=_cte(req.html))
        else:
            msg.add_alternative(req.html, subtype="html", charset="utf-8", cte=_cte(req.html))
    html_part = msg.get_body(("html",)) if req.html is not None else None
    for a in req.attachments:
        maintype, subtype, params = a.mime_type
        if a.content_id and html_part is not None:
            # Inline images referenced as cid: from the HTML travel in multipart/related.
            html_part.add_related(a.content, maintype, subtype, cid=f"<{a.content_id}>",
                                  filename=a.filename, disposition="inline", params=params)
        else:
            msg.add_attachment(a.content, maintype, subtype, filename=a.filename,
                               params=params)


def _cte(text: str) -> str:
    """7bit when the text is, quoted-printable otherwise: readable, and safe for any upstream."""
    plain = text.isascii() and not _CONTROL.search(text)
    if plain and all(len(line) <= MAX_LINE for line in text.splitlines()):
        return "7bit"
    return "quoted-printable"


def _ascii_domain(domain: str) -> str:
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return "clickrelay.invalid"
