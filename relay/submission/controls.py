"""The Lettermint control headers of a submitted mail (docs/mail.md): read, checked, and
removed before the mail goes on. Every ``X-LM-*`` and ``X-Lettermint-*`` header goes,
whether we know it or not, and so does ``Idempotency-Key``."""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.errors import BadInput
from relay.message.headers import HeaderField, decoded
from relay.message.limits import check_header

ROUTE_HEADER = "X-Lettermint-Route"
TRACK_CLICKS_HEADER = "X-LM-Override-Track-Clicks"
TRACK_OPENS_HEADER = "X-LM-Override-Track-Opens"
TAG_HEADER = "X-LM-Tag"
METADATA_PREFIX = "x-lm-metadata-"
IDEMPOTENCY_HEADER = "Idempotency-Key"

MAX_TAG_LENGTH = 255
MAX_METADATA_ENTRIES = 50


@dataclass(frozen=True)
class Controls:
    route_slug: str | None = None
    track_clicks: bool | None = None
    track_opens: bool | None = None
    tag: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None


def is_control_header(f: HeaderField) -> bool:
    name = f.lname
    return (
        name.startswith("x-lm-")
        or name.startswith("x-lettermint-")
        or name == IDEMPOTENCY_HEADER.lower()
    )


def read_controls(fields: list[HeaderField]) -> Controls:
    """The controls a mail carries; a malformed one is a ``BadInput`` naming the header.
    Values are decoded (RFC 2047) and always valid text: a byte that is not UTF-8 is
    read as U+FFFD, and the mail is accepted."""
    values: dict[str, str] = {}
    metadata: dict[str, str] = {}
    for f in fields:
        if f.lname.startswith(METADATA_PREFIX):
            key = f.name[len(METADATA_PREFIX) :]
            if not key:
                raise BadInput(f.name, f"{f.name}: empty metadata key")
            metadata[key] = header_text(f)
        elif is_control_header(f):
            values.setdefault(f.lname, header_text(f).strip())
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise BadInput("X-LM-Metadata", f"more than {MAX_METADATA_ENTRIES} metadata headers")
    tag = values.get(TAG_HEADER.lower()) or None
    if tag is not None and len(tag) > MAX_TAG_LENGTH:
        raise BadInput(TAG_HEADER, f"{TAG_HEADER} longer than {MAX_TAG_LENGTH} characters")
    return Controls(
        route_slug=values.get(ROUTE_HEADER.lower()) or None,
        track_clicks=_flag(values, TRACK_CLICKS_HEADER),
        track_opens=_flag(values, TRACK_OPENS_HEADER),
        tag=tag,
        metadata=metadata,
        idempotency_key=values.get(IDEMPOTENCY_HEADER.lower()) or None,
    )


def header_text(f: HeaderField) -> str:
    """A header's value as text, decoded within the limits of relay/message/limits.py."""
    check_header(f.name, f.raw, f.value)
    return decoded(f.value)


def _flag(values: dict[str, str], header: str) -> bool | None:
    raw = values.get(header.lower())
    if raw is None:
        return None
    if raw.lower() == "true":
        return True
    if raw.lower() == "false":
        return False
    raise BadInput(header, f"{header} must be true or false, not {raw[:40]!r}")
