"""A Lettermint send request (``POST /v1/send`` body, or one item of a batch) read into a
typed ``SendRequest`` (DESIGN §8). Pure: JSON in, checked data out; ``relay.api_mime``
turns it into the message. A problem is a ``BadInput`` naming the field (``to[1]``,
``messages[2].attachments[0].content``), which the API answers with 422."""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any

from relay.api_fields import Fields
from relay.controls import MAX_METADATA_ENTRIES, MAX_TAG_LENGTH
from relay.errors import BadInput

SEND_FIELDS = frozenset({
    "from", "to", "cc", "bcc", "reply_to", "subject", "html", "text", "headers", "metadata",
    "tag", "tags", "route", "settings", "attachments", "scheduled_at", "sandbox_result",
})
# Fields of the Lettermint request that clickrelay cannot honour: refused rather than
# silently ignored, because ignoring them would send something else than was asked.
UNSUPPORTED = {
    "scheduled_at": "scheduled sending is not supported; the mail would go out at once",
    "sandbox_result": "sandbox delivery is not supported; the mail would be delivered for real",
    "tags": "name/value tags are not supported; use tag and metadata",
}
SETTINGS_FIELDS = frozenset({"track_clicks", "track_opens"})
ATTACHMENT_FIELDS = frozenset({"filename", "content", "content_type", "content_id"})
# Headers that the request's own fields set; giving them in ``headers`` as well is an error.
STRUCTURAL_HEADERS = frozenset({
    "from", "to", "cc", "bcc", "reply-to", "subject", "mime-version", "content-type",
    "content-transfer-encoding", "content-disposition",
})
MAX_ATTACHMENTS = 100
MAX_HEADER_VALUE = 4000

_TOKEN = re.compile(r"[!-9;-~]+")  # RFC 5322 field name: printable ASCII except colon
_ADDR_SPEC = re.compile(r'[^\s@<>(),;:\\"\[\]]+@[^\s@<>(),;:\\"\[\]]+')
_NAME_ADDR = re.compile(r"\s*(.*?)\s*<([^<>]*)>\s*")
# Every character that ends a line for Python's email package, and the other controls.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]+")


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes = field(repr=False)
    maintype: str
    subtype: str
    params: dict[str, str] = field(default_factory=dict)
    content_id: str | None = None  # inline, referenced as cid: from the HTML


@dataclass(frozen=True)
class SendRequest:
    sender: Address
    to: tuple[Address, ...]
    subject: str
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    html: str | None = None
    text: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()
    tag: str | None = None
    route: str | None = None
    track_clicks: bool | None = None
    track_opens: bool | None = None
    attachments: tuple[Attachment, ...] = ()

    @property
    def mail_from(self) -> str:
        return self.sender.addr_spec

    @property
    def rcpt_tos(self) -> list[str]:
        """Every recipient once (To, Cc, Bcc) in order; case-insensitive duplicates dropped."""
        seen: set[str] = set()
        out = []
        for address in (*self.to, *self.cc, *self.bcc):
            if address.addr_spec.lower() not in seen:
                seen.add(address.addr_spec.lower())
                out.append(address.addr_spec)
        return out


def parse_send_request(
    data: Any, prefix: str = "", extra: frozenset[str] = frozenset()
) -> SendRequest:
    """Read and check one send request; ``extra`` names further keys the caller reads
    itself (a batch item's ``idempotency_key``)."""
    f = Fields(data, prefix)
    f.only(SEND_FIELDS | extra)
    for name, reason in UNSUPPORTED.items():
        if f.raw(name) not in (None, []):
            raise f.error(name, reason)
    html, text = f.optional_str("html"), f.optional_str("text")
    if html is None and text is None:
        raise f.error("html", "give html, text or both")
    settings = Fields(f.optional_object("settings") or {}, f.name("settings"))
    settings.only(SETTINGS_FIELDS, hint="only track_clicks and track_opens are supported")
    return SendRequest(
        sender=parse_address(f.required_str("from"), f.name("from")),
        to=_addresses(f, "to", required=True),
        cc=_addresses(f, "cc"),
        bcc=_addresses(f, "bcc"),
        reply_to=_addresses(f, "reply_to"),
        subject=_one_line(f.required_str("subject", allow_empty=True)).strip(),
        html=html,
        text=text,
        headers=_headers(f),
        metadata=_metadata(f),
        tag=_tag(f),
        route=f.optional_str("route") or None,
        track_clicks=settings.optional_bool("track_clicks"),
        track_opens=settings.optional_bool("track_opens"),
        attachments=_attachments(f),
    )


def parse_address(value: str, name: str) -> Address:
    """``addr@example.com`` or ``Name <addr@example.com>``."""
    if _CONTROL.search(value):
        raise BadInput(name, f"{name}: an address must be one line without control characters")
    match = _NAME_ADDR.fullmatch(value)
    display, spec = ("", value.strip())
    if match:
        display, spec = match.group(1).strip('"'), match.group(2).strip()
    domain = spec.rpartition("@")[2]
    if not _ADDR_SPEC.fullmatch(spec) or "" in domain.split("."):
        raise BadInput(name, f"{name}: not an email address: {value[:100]!r}")
    try:
        return Address(display_name=display, addr_spec=spec)
    except Exception as exc:  # the stdlib parser raises assorted errors on odd input
        raise BadInput(name, f"{name}: not an email address: {value[:100]!r}") from exc


def _addresses(f: Fields, key: str, *, required: bool = False) -> tuple[Address, ...]:
    items = f.string_list(key, required=required)
    if required and not items:
        raise f.error(key, "needs at least one address")
    return tuple(parse_address(item, f"{f.name(key)}[{i}]") for i, item in enumerate(items))


def _headers(f: Fields) -> tuple[tuple[str, str], ...]:
    out = []
    for name, value in f.string_map("headers").items():
        where = f"{f.name('headers')}.{name}"
        if not _TOKEN.fullmatch(name):
            raise BadInput(where, f"{where}: a header name is printable ASCII without a colon")
        if name.lower() in STRUCTURAL_HEADERS:
            raise BadInput(where, f"{where}: set through the request's own fields, not headers")
        if name.lower() == "date" and not _is_date(value):
            raise BadInput(where, f"{where}: not an RFC 5322 date: {value[:60]!r}")
        if len(value) > MAX_HEADER_VALUE:
            raise BadInput(where, f"{where}: longer than {MAX_HEADER_VALUE} characters")
        out.append((name, _one_line(value)))
    return tuple(out)


def _metadata(f: Fields) -> tuple[tuple[str, str], ...]:
    metadata = f.string_map("metadata")
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise f.error("metadata", f"at most {MAX_METADATA_ENTRIES} entries")
    for key, value in metadata.items():
        where = f"{f.name('metadata')}.{key}"
        if not _TOKEN.fullmatch(key):
            raise BadInput(where, f"{where}: a metadata key is printable ASCII without a colon")
        if len(value) > MAX_HEADER_VALUE:
            raise BadInput(where, f"{where}: longer than {MAX_HEADER_VALUE} characters")
    return tuple((k, _one_line(v)) for k, v in metadata.items())


def _tag(f: Fields) -> str | None:
    tag = _one_line(f.optional_str("tag") or "").strip()
    if len(tag) > MAX_TAG_LENGTH:
        raise f.error("tag", f"longer than {MAX_TAG_LENGTH} characters")
    return tag or None


def _attachments(f: Fields) -> tuple[Attachment, ...]:
    items = f.object_list("attachments")
    if len(items) > MAX_ATTACHMENTS:
        raise f.error("attachments", f"at most {MAX_ATTACHMENTS} attachments")
    where = f.name("attachments")
    return tuple(_attachment(Fields(item, f"{where}[{i}]")) for i, item in enumerate(items))


def _attachment(a: Fields) -> Attachment:
    a.only(ATTACHMENT_FIELDS)
    filename = _one_line(a.required_str("filename")).strip()
    encoded = "".join(a.required_str("content", allow_empty=True).split())
    try:
        content = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise a.error("content", "not valid base64") from exc
    content_type = a.optional_str("content_type") or _guess_type(filename)
    parsed = _split_type(content_type)
    if parsed is None:
        raise a.error("content_type", f"not a MIME type: {content_type[:60]!r}")
    content_id = (a.optional_str("content_id") or "").strip().strip("<>") or None
    if content_id is not None and not _TOKEN.fullmatch(content_id):
        raise a.error("content_id", "printable ASCII without spaces")
    return Attachment(filename, content, *parsed, content_id=content_id)


def _split_type(content_type: str) -> tuple[str, str, dict[str, str]] | None:
    """``text/calendar; method=REQUEST`` → (``text``, ``calendar``, ``{method: REQUEST}``)."""
    main, sep, sub = content_type.split(";", 1)[0].strip().lower().partition("/")
    if not sep or not _TOKEN.fullmatch(main or " ") or not _TOKEN.fullmatch(sub or " "):
        return None
    probe = Message()
    try:
        probe["Content-Type"] = _one_line(content_type)
        params = probe.get_params() or []
    except Exception:  # a malformed parameter list
        return None
    return main, sub, {str(k): str(v) for k, v in params[1:]}


def _guess_type(filename: str) -> str:
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"


def _is_date(value: str) -> bool:
    try:
        return parsedate_to_datetime(value) is not None
    except (TypeError, ValueError, IndexError):
        return False


def _one_line(value: str) -> str:
    """Line breaks and control characters in a header value are repaired to spaces, as
    Lettermint does (a header is one logical line, RFC 5322 §2.2)."""
    return _CONTROL.sub(" ", value)
