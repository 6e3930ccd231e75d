"""The MIME walk: find a message's text/html body parts and rewrite each one in place.

docs/mail.md: only ``text/html`` body parts are rewritten; attachments (``Content-Disposition:
attachment``) and attached messages (``message/rfc822``, never entered) are not touched;
every byte outside a rewritten part's body goes out exactly as it came, so the MIME
structure cannot change. A part that cannot be decoded or rewritten is forwarded as it
was and reported (fail open): the caller logs and counts it.

Header fields are located as raw spans (``relay.message.headers``); Python's ``email`` package
only reads parameter values and never re-serialises anything. The walk reads the message
by offsets and describes the result as segments (spans of the input, new header bytes,
rewritten part bodies), so that its time and memory stay linear in the size of the
message however deep the nesting; relay/rewrite/copies.py makes the recipients' copies from the
segments. With ``limits`` (relay/message/limits.py), a message over a limit is refused
(``LimitExceeded``) instead of forwarded.
"""

from __future__ import annotations

import email.message
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import collapse_rfc2231_value

from relay.errors import LimitExceeded
from relay.message.body import (
    MAX_LINE,
    BodyError,
    EncodedText,
    TextBody,
    decode_body,
    encode_quoted_printable,
    has_long_line,
    transfer_name,
)
from relay.message.headers import (
    entity_bounds,
    fold_header_lines,
    get_value,
    line_ending,
    parse_fields,
    replace_field,
)
from relay.message.limits import MessageLimits, check_header_block, check_parameters, over_limit

MAX_DEPTH = 50


@dataclass(frozen=True)
class PartOutcome:
    path: str  # MIME part path like "1", "1.2" (IMAP numbering; "" is the whole message)
    rewritten: bool
    error: str | None  # why the part was left unchanged (fail open), else None


@dataclass(frozen=True)
class MimeResult:
    raw: bytes
    parts: tuple[PartOutcome, ...]  # one per text/html body part considered


@dataclass(frozen=True)
class RewrittenPart:
    """The new body of a rewritten text/html part."""

    path: str
    html: str  # the rewritten text
    form: TextBody  # how the part was decoded, and so how its text is encoded back
    encoded: EncodedText  # ``html`` encoded so; ``encoded.body`` replaces the old body


# A span of the input, bytes to put instead of a span (a part's new header block), or a
# rewritten part's new body.
Segment = tuple[int, int] | bytes | RewrittenPart


@dataclass(frozen=True)
class MimeWalk:
    segments: tuple[Segment, ...]  # together, the whole new message in order
    parts: tuple[PartOutcome, ...]  # one per text/html body part considered

    def join(self, raw: bytes) -> bytes:
        """The new message; ``raw`` itself when nothing changed."""
        if self.segments == ((0, len(raw)),):
            return raw
        return b"".join(segment_bytes(raw, s) for s in self.segments)


def segment_bytes(raw: bytes, segment: Segment) -> bytes:
    if isinstance(segment, tuple):
        return raw[segment[0] : segment[1]]
    if isinstance(segment, RewrittenPart):
        return segment.encoded.body
    return segment


def rewrite_html_parts(
    raw: bytes, rewrite: Callable[[str], str], *, max_depth: int = MAX_DEPTH,
    limits: MessageLimits | None = None,
) -> MimeResult:
    """``raw`` (a whole RFC 5322 message) with ``rewrite`` applied to the decoded HTML of
    each text/html body part, in document order. Multipart nesting deeper than
    ``max_depth`` is forwarded unchanged and reported."""
    walk = walk_html_parts(raw, rewrite, max_depth=max_depth, limits=limits)
    return MimeResult(walk.join(raw), walk.parts)


def walk_html_parts(
    raw: bytes, rewrite: Callable[[str], str], *, max_depth: int = MAX_DEPTH,
    limits: MessageLimits | None = None,
) -> MimeWalk:
    """``rewrite_html_parts`` as segments. With ``limits``, more MIME parts or deeper
    nesting than they allow, or too large part headers, raise ``LimitExceeded``."""
    walk = _Walk(raw, rewrite, max_depth, limits)
    walk.entity(0, len(raw), "", 0, "text/plain")
    walk.emit_until(len(raw))
    return MimeWalk(tuple(walk.segments), tuple(walk.outcomes))


def fold_long_lines(raw: bytes) -> bytes:
    """``raw`` with no line over 998 octets (RFC 5322 §2.1.1), as an MTA must send it: a
    body part with such a line goes out quoted-printable (RFC 2045 §6.7: the same bytes
    once decoded), a long header line is folded at a space. Left as they are: an
    attached message (RFC 2046 §5.2.1 allows it no other encoding), a header line
    without a space to fold at. ``raw`` itself when no line is too long."""
    if not has_long_line(raw):
        return raw
    walk = _Walk(raw, None, MAX_DEPTH, None)
    walk.entity(0, len(raw), "", 0, "text/plain")
    walk.emit_until(len(raw))
    return MimeWalk(tuple(walk.segments), ()).join(raw)


@dataclass(frozen=True)
class _PartInfo:
    content_type: str
    boundary: str | None
    charset: str | None
    transfer_encoding: str | None
    attachment: bool

    @classmethod
    def read(cls, header: bytes, default_type: str, checked: bool = False) -> _PartInfo:
        fields = parse_fields(header)
        params = email.message.Message()
        params.set_default_type(default_type)
        content_type = get_value(fields, "Content-Type")
        if content_type is not None:
            if checked:  # the email package's parameter parsing is quadratic
                field_ = next(f for f in fields if f.lname == "content-type")
                check_parameters("Content-Type", field_.raw, content_type)
            # Parameters that matter are ASCII; 8-bit junk trips the email package.
            params["Content-Type"] = content_type.encode("ascii", "replace").decode("ascii")
        charset = params.get_param("charset")
        disposition = get_value(fields, "Content-Disposition") or ""
        return cls(
            content_type=params.get_content_type(),
            boundary=params.get_boundary(),
            charset=collapse_rfc2231_value(charset) if charset else None,
            transfer_encoding=get_value(fields, "Content-Transfer-Encoding"),
            attachment=disposition.split(";")[0].strip().lower() == "attachment",
        )


@dataclass
class _Walk:
    raw: bytes
    rewrite: Callable[[str], str] | None  # None: fold long lines instead (fold_long_lines)
    max_depth: int
    limits: MessageLimits | None
    outcomes: list[PartOutcome] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    emitted: int = 0  # the input up to here is in ``segments``
    entities: int = 0
    header_bytes: int = 0

    def emit_until(self, end: int) -> None:
        if end > self.emitted:
            self.segments.append((self.emitted, end))
        self.emitted = end

    def entity(self, start: int, end: int, path: str, depth: int, default_type: str) -> None:
        """Walk the entity ``raw[start:end]``; a rewritten part goes into ``segments``."""
        header_end, body_start = entity_bounds(self.raw, start, end)
        self.count(header_end - start)
        header = self.raw[start:header_end]
        try:
            info = _PartInfo.read(header, default_type, self.limits is not None)
        except LimitExceeded:
            raise
        except Exception as exc:  # fail open: a header the email package chokes on
            self.outcomes.append(PartOutcome(path or "1", False, f"unreadable header: {exc!r}"))
            return
        if self.rewrite is None:
            self.refold(start, header, body_start, end, info)
        if info.content_type.startswith("multipart/"):
            self.multipart(body_start, end, info, path, depth)
        elif self.rewrite is not None and info.content_type == "text/html" and not info.attachment:
            self.html(start, header, body_start, end, info, path or "1")

    def count(self, header_size: int) -> None:
        if self.limits is None:
            return
        self.entities += 1
        if self.entities > self.limits.max_parts:
            raise over_limit("MIME parts", self.limits.max_parts, "max_parts")
        self.header_bytes += header_size
        check_header_block(self.header_bytes)

    def multipart(self, start: int, end: int, info: _PartInfo, path: str, depth: int) -> None:
        if info.boundary is None:
            return
        if self.limits is not None and depth >= self.limits.max_depth:
            raise over_limit("levels of multipart nesting", self.limits.max_depth, "max_depth")
        if depth >= self.max_depth:
            error = f"MIME nesting deeper than {self.max_depth} levels, forwarded unchanged"
            self.outcomes.append(PartOutcome(path, False, error))
            return
        # In a digest a part without Content-Type is a message (RFC 2046 §5.1.5).
        child_type = "message/rfc822" if info.content_type == "multipart/digest" else "text/plain"
        boundary = info.boundary.encode("utf-8", "surrogateescape")
        for number, (part_start, part_end) in enumerate(
            part_spans(self.raw, boundary, start, end), 1
        ):
            child_path = f"{path}.{number}" if path else str(number)
            self.entity(part_start, part_end, child_path, depth + 1, child_type)

    def refold(
        self, start: int, header: bytes, body_start: int, end: int, info: _PartInfo
    ) -> None:
        """An entity with a line too long: its header's folded; a leaf's body
        quoted-printable, its header saying so (a multipart's body is its parts')."""
        eol = line_ending(self.raw, start, end)
        new_header = header
        if has_long_line(header):
            new_header = fold_header_lines(header, MAX_LINE, eol)
        body: bytes | None = None
        if (not info.content_type.startswith(("multipart/", "message/"))
                and transfer_name(info.transfer_encoding) == "identity"
                and has_long_line(self.raw, body_start, end)):
            cte = b"Content-Transfer-Encoding: quoted-printable" + eol
            new_header = replace_field(new_header, "Content-Transfer-Encoding", cte)
            body = encode_quoted_printable(self.raw[body_start:end], eol)
        if new_header is header:
            return
        self.emit_until(start)
        self.segments.append(new_header)
        self.emitted = start + len(header)
        if body is not None:
            self.emit_until(body_start)  # the blank line
            self.segments.append(body)
            self.emitted = end

    def html(
        self, start: int, header: bytes, body_start: int, end: int, info: _PartInfo, path: str
    ) -> None:
        assert self.rewrite is not None
        eol = line_ending(self.raw, start, end)
        try:
            decoded = decode_body(self.raw[body_start:end], info.transfer_encoding,
                                  info.charset, eol)
        except BodyError as exc:
            self.outcomes.append(PartOutcome(path, False, str(exc)))
            return
        try:
            html = self.rewrite(decoded.text)
            if html == decoded.text:
                self.outcomes.append(PartOutcome(path, False, None))
                return
            encoded = decoded.encoding_of(html)
        except LimitExceeded:
            raise
        except Exception as exc:  # fail open (docs/mail.md): reported, never silent
            error = f"rewrite failed: {type(exc).__name__}: {exc}"
            self.outcomes.append(PartOutcome(path, False, error))
            return
        if encoded.transfer != decoded.transfer:
            cte = b"Content-Transfer-Encoding: quoted-printable" + eol
            self.emit_until(start)
            self.segments.append(replace_field(header, "Content-Transfer-Encoding", cte)
                                 + self.raw[start + len(header) : body_start])
        else:
            self.emit_until(body_start)
        self.emitted = end
        form = TextBody("", decoded.codec, decoded.transfer, decoded.eol, decoded.suffix,
                        decoded.seven_bit)
        self.segments.append(RewrittenPart(path, html, form, encoded))
        self.outcomes.append(PartOutcome(path, True, None))


def part_spans(
    body: bytes, boundary: bytes, start: int = 0, end: int | None = None
) -> list[tuple[int, int]]:
    """The byte spans of the body parts of a multipart body (RFC 2046 §5.1.1), the body
    being ``body[start:end]`` (offsets into ``body``).

    A part runs from after its delimiter line to before the line break that precedes the
    next delimiter (that line break belongs to the delimiter). Without a close delimiter
    the last part runs to the end of the body."""
    end = len(body) if end is None else end
    delimiter = re.compile(rb"^--" + re.escape(boundary) + rb"(--)?[ \t]*\r?$", re.MULTILINE)
    spans = []
    part_start: int | None = None
    for match in delimiter.finditer(body, start, end):
        if part_start is not None:
            spans.append((part_start, max(part_start, _before_line_break(body, match.start()))))
        if match.group(1):
            return spans
        part_start = match.end() + (body[match.end() : min(end, match.end() + 1)] == b"\n")
    if part_start is not None:
        spans.append((part_start, end))
    return spans


def _before_line_break(body: bytes, pos: int) -> int:
    if body[pos - 2 : pos] == b"\r\n":
        return pos - 2
    if body[pos - 1 : pos] == b"\n":
        return pos - 1
    return pos
