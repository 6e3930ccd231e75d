"""The shape of a Lettermint send request (``POST /v1/send`` body, or one item of a batch),
declared once: validation and the OpenAPI document both come from it. Reading a request
checks it and gives the typed ``SendMailRequest`` that ``relay.api.send_mime`` turns into the
message; a problem names the field (``to[1]``, ``messages[2].attachments[0].content``),
which the API answers with 422 (``relay.api.model``)."""

from __future__ import annotations

import base64
import binascii
import mimetypes
import re
from email.headerregistry import Address
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PlainValidator, model_validator

from relay.api.model import Body, Unsupported, invalid, kind_of
from relay.submission.controls import MAX_METADATA_ENTRIES, MAX_TAG_LENGTH

# Headers that the request's own fields set; giving them in ``headers`` as well is an error.
STRUCTURAL_HEADERS = frozenset({
    "from", "to", "cc", "bcc", "reply-to", "subject", "mime-version", "content-type",
    "content-transfer-encoding", "content-disposition",
})
MAX_ATTACHMENTS = 100
MAX_HEADER_VALUE = 4000
MAX_KEY_LENGTH = 255  # an idempotency key

_TOKEN = re.compile(r"[!-9;-~]+")  # RFC 5322 field name: printable ASCII except colon
_ADDR_SPEC = re.compile(r'[^\s@<>(),;:\\"\[\]]+@[^\s@<>(),;:\\"\[\]]+')
_NAME_ADDR = re.compile(r"\s*(.*?)\s*<([^<>]*)>\s*")
# Every character that ends a line for Python's email package, and the other controls.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]+")


def parse_address(value: Any) -> Address:
    """``addr@example.com`` or ``Name <addr@example.com>``; the address may be
    internationalised (``zoë@bücher.example``)."""
    if not isinstance(value, str):
        raise invalid(f"must be a string, not {kind_of(value)}")
    if _CONTROL.search(value):
        raise invalid("an address must be one line without control characters")
    match = _NAME_ADDR.fullmatch(value)
    display, spec = ("", value.strip())
    if match:
        display, spec = match.group(1).strip('"'), match.group(2).strip()
    domain = spec.rpartition("@")[2]
    if not _ADDR_SPEC.fullmatch(spec) or "" in domain.split("."):
        raise invalid(f"not an email address: {value[:100]!r}")
    local = spec.rpartition("@")[0]
    try:
        if not local.isascii():  # RFC 6531, as SMTP takes it: the stdlib's parser refuses it
            return Address(display_name=display, username=local, domain=domain)
        return Address(display_name=display, addr_spec=spec)
    except Exception as exc:  # the stdlib parser raises assorted errors on odd input
        raise invalid(f"not an email address: {value[:100]!r}") from exc


def _sender(value: Any) -> Address:
    if isinstance(value, str) and not value.strip():
        raise invalid("must not be empty")
    return parse_address(value)


def _recipients(addresses: list[Address]) -> list[Address]:
    if not addresses:
        raise invalid("needs at least one address")
    return addresses


def one_line(value: str) -> str:
    """Line breaks and control characters in a header value are repaired to spaces, as
    Lettermint does (a header is one logical line, RFC 5322 §2.2)."""
    return _CONTROL.sub(" ", value)


def _header_name(name: str) -> str:
    if not _TOKEN.fullmatch(name):
        raise invalid("a header name is printable ASCII without a colon")
    if name.lower() in STRUCTURAL_HEADERS:
        raise invalid("set through the request's own fields, not headers")
    return name


def _metadata_key(key: str) -> str:
    if not _TOKEN.fullmatch(key):
        raise invalid("a metadata key is printable ASCII without a colon")
    return key


def _dates(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if name.lower() == "date" and not _is_date(value):
            raise invalid(f"not an RFC 5322 date: {value[:60]!r}", at=name)
    return headers


def _is_date(value: str) -> bool:
    try:
        return parsedate_to_datetime(value) is not None
    except (TypeError, ValueError, IndexError):
        return False


def _subject(value: str) -> str:
    return one_line(value).strip()


def _route(value: str | None) -> str | None:
    return value or None


def _tag(value: str | None) -> str | None:
    tag = one_line(value or "").strip()
    if len(tag) > MAX_TAG_LENGTH:
        raise invalid(f"longer than {MAX_TAG_LENGTH} characters")
    return tag or None


def _filename(value: str) -> str:
    if not value.strip():
        raise invalid("must not be empty")
    return one_line(value).strip()


def _base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise invalid(f"must be a string, not {kind_of(value)}")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid("not valid base64") from exc


def _content_type(value: str | None) -> str | None:
    if value and split_type(value) is None:
        raise invalid(f"not a MIME type: {value[:60]!r}")
    return value or None


def _content_id(value: str | None) -> str | None:
    content_id = (value or "").strip().strip("<>") or None
    if content_id is not None and not _TOKEN.fullmatch(content_id):
        raise invalid("printable ASCII without spaces")
    return content_id


def _printable(key: str) -> str:
    if not key.isprintable():
        raise invalid(f"1 to {MAX_KEY_LENGTH} printable characters")
    return key


MailAddress = Annotated[Address, PlainValidator(parse_address, json_schema_input_type=str)]
HeaderValue = Annotated[str, Field(max_length=MAX_HEADER_VALUE), AfterValidator(one_line)]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH),
                           AfterValidator(_printable)]


class Attachment(Body):
    filename: Annotated[str, AfterValidator(_filename)]
    content: Annotated[bytes, PlainValidator(_base64, json_schema_input_type=str),
                       Field(repr=False, description="The file, base64-encoded.")]
    content_type: Annotated[str | None, AfterValidator(_content_type)] = None
    # An inline part, referenced as cid: from the HTML.
    content_id: Annotated[str | None, AfterValidator(_content_id)] = None

    @property
    def mime_type(self) -> tuple[str, str, dict[str, str]]:
        """The content type given or guessed from the name, as (main, sub, parameters)."""
        guessed, _ = mimetypes.guess_type(self.filename, strict=False)
        return split_type(self.content_type or guessed or "") or ("application", "octet-stream",
                                                                  {})


class SendSettings(Body):
    unknown_hint = "only track_clicks and track_opens are supported"

    track_clicks: bool | None = None
    track_opens: bool | None = None


class SendMailRequest(Body):
    sender: Annotated[Address, PlainValidator(_sender, json_schema_input_type=str)] = Field(
        alias="from")
    to: Annotated[list[MailAddress], AfterValidator(_recipients),
                  Field(json_schema_extra={"minItems": 1})]
    cc: list[MailAddress] = Field(default_factory=list)
    bcc: list[MailAddress] = Field(default_factory=list)
    reply_to: list[MailAddress] = Field(default_factory=list)
    subject: Annotated[str, AfterValidator(_subject)]
    html: str | None = None
    text: str | None = None
    headers: Annotated[dict[Annotated[str, AfterValidator(_header_name)], HeaderValue],
                       AfterValidator(_dates)] = Field(default_factory=dict)
    metadata: Annotated[dict[Annotated[str, AfterValidator(_metadata_key)], HeaderValue],
                        Field(max_length=MAX_METADATA_ENTRIES)] = Field(default_factory=dict)
    tag: Annotated[str | None, AfterValidator(_tag)] = None
    # A route's slug; the project's default route without one.
    route: Annotated[str | None, AfterValidator(_route)] = None
    settings: SendSettings | None = None
    attachments: Annotated[list[Attachment], Field(max_length=MAX_ATTACHMENTS)] = Field(
        default_factory=list)
    # Fields of Lettermint's request that clickrelay cannot honour.
    scheduled_at: Annotated[Any, Unsupported(
        "scheduled sending is not supported; the mail would go out at once", ([],))] = None
    sandbox_result: Annotated[Any, Unsupported(
        "sandbox delivery is not supported; the mail would be delivered for real", ([],))] = None
    tags: Annotated[Any, Unsupported(
        "name/value tags are not supported; use tag and metadata", ([],))] = None

    @model_validator(mode="after")
    def _has_a_body(self) -> SendMailRequest:
        if self.html is None and self.text is None:
            raise invalid("give html, text or both", at="html")
        return self

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

    @property
    def track_clicks(self) -> bool | None:
        return self.settings.track_clicks if self.settings else None

    @property
    def track_opens(self) -> bool | None:
        return self.settings.track_opens if self.settings else None


class SendBatchMailItem(SendMailRequest):
    # Emails accepted under their key in the last 24 hours are not sent again.
    idempotency_key: IdempotencyKey | None = None


def split_type(content_type: str) -> tuple[str, str, dict[str, str]] | None:
    """``text/calendar; method=REQUEST`` → (``text``, ``calendar``, ``{method: REQUEST}``)."""
    main, sep, sub = content_type.split(";", 1)[0].strip().lower().partition("/")
    if not sep or not _TOKEN.fullmatch(main or " ") or not _TOKEN.fullmatch(sub or " "):
        return None
    probe = Message()
    try:
        probe["Content-Type"] = one_line(content_type)
        params = probe.get_params() or []
    except Exception:  # a malformed parameter list
        return None
    return main, sub, {str(k): str(v) for k, v in params[1:]}
