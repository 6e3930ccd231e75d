"""The MIME walk: find a message's text/html body parts and rewrite each one in place.

DESIGN §4: only ``text/html`` body parts are rewritten; attachments (``Content-Disposition:
attachment``) and attached messages (``message/rfc822``, never entered) are not touched;
every byte outside a rewritten part's body goes out exactly as it came, so the MIME
structure cannot change. A part that cannot be decoded or rewritten is forwarded as it
was and reported (fail open): the caller logs and counts it.

Header fields are located as raw spans (``relay.headers``); Python's ``email`` package
only reads parameter values and never re-serialises anything.
"""

from __future__ import annotations

import email.message
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import collapse_rfc2231_value

from relay.headers import get_value, line_ending, parse_fields, replace_field, split_entity
from relay.mime_body import BodyError, decode_body

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


def rewrite_html_parts(
    raw: bytes, rewrite: Callable[[str], str], *, max_depth: int = MAX_DEPTH
) -> MimeResult:
    """``raw`` (a whole RFC 5322 message) with ``rewrite`` applied to the decoded HTML of
    each text/html body part, in document order. Multipart nesting deeper than
    ``max_depth`` is forwarded unchanged and reported."""
    walk = _Walk(rewrite, max_depth)
    return MimeResult(walk.entity(raw, "", 0, "text/plain"), tuple(walk.outcomes))


@dataclass(frozen=True)
class _PartInfo:
    content_type: str
    boundary: str | None
    charset: str | None
    transfer_encoding: str | None
    attachment: bool

    @classmethod
    def read(cls, header: bytes, default_type: str) -> _PartInfo:
        fields = parse_fields(header)
        params = email.message.Message()
        params.set_default_type(default_type)
        content_type = get_value(fields, "Content-Type")
        if content_type is not None:
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
    rewrite: Callable[[str], str]
    max_depth: int
    outcomes: list[PartOutcome] = field(default_factory=list)

    def entity(self, raw: bytes, path: str, depth: int, default_type: str) -> bytes:
        """``raw`` with its HTML rewritten; the very same object when nothing changed."""
        header, separator, body = split_entity(raw)
        try:
            info = _PartInfo.read(header, default_type)
        except Exception as exc:  # fail open: a header the email package chokes on
            return self.unchanged(raw, path or "1", f"unreadable header: {exc!r}")
        if info.content_type.startswith("multipart/"):
            return self.multipart(raw, header + separator, body, info, path, depth)
        if info.content_type == "text/html" and not info.attachment:
            return self.html(raw, header, separator, body, info, path or "1")
        return raw

    def multipart(
        self, raw: bytes, head: bytes, body: bytes, info: _PartInfo, path: str, depth: int
    ) -> bytes:
        if info.boundary is None:
            return raw
        if depth >= self.max_depth:
            error = f"MIME nesting deeper than {self.max_depth} levels, forwarded unchanged"
            self.outcomes.append(PartOutcome(path, False, error))
            return raw
        # In a digest a part without Content-Type is a message (RFC 2046 §5.1.5).
        child_type = "message/rfc822" if info.content_type == "multipart/digest" else "text/plain"
        pieces = []
        pos = 0
        boundary = info.boundary.encode("utf-8", "surrogateescape")
        for number, (start, end) in enumerate(part_spans(body, boundary), 1):
            part = body[start:end]
            child_path = f"{path}.{number}" if path else str(number)
            new = self.entity(part, child_path, depth + 1, child_type)
            if new is not part:
                pieces += [body[pos:start], new]
                pos = end
        if not pieces:
            return raw
        pieces.append(body[pos:])
        return head + b"".join(pieces)

    def html(
        self, raw: bytes, header: bytes, separator: bytes, body: bytes, info: _PartInfo, path: str
    ) -> bytes:
        eol = line_ending(raw)
        try:
            decoded = decode_body(body, info.transfer_encoding, info.charset, eol)
        except BodyError as exc:
            return self.unchanged(raw, path, str(exc))
        try:
            html = self.rewrite(decoded.text)
            if html == decoded.text:
                return self.unchanged(raw, path, None)
            new_body, to_quoted_printable = decoded.encode(html)
        except Exception as exc:  # fail open (DESIGN §4): reported, never silent
            return self.unchanged(raw, path, f"rewrite failed: {type(exc).__name__}: {exc}")
        if to_quoted_printable:
            cte = b"Content-Transfer-Encoding: quoted-printable" + eol
            header = replace_field(header, "Content-Transfer-Encoding", cte)
        self.outcomes.append(PartOutcome(path, True, None))
        return header + separator + new_body

    def unchanged(self, raw: bytes, path: str, error: str | None) -> bytes:
        self.outcomes.append(PartOutcome(path, False, error))
        return raw


def part_spans(body: bytes, boundary: bytes) -> list[tuple[int, int]]:
    """The byte spans of the body parts of a multipart body (RFC 2046 §5.1.1).

    A part runs from after its delimiter line to before the line break that precedes the
    next delimiter (that line break belongs to the delimiter). Without a close delimiter
    the last part runs to the end of the body."""
    delimiter = re.compile(rb"^--" + re.escape(boundary) + rb"(--)?[ \t]*\r?$", re.MULTILINE)
    spans = []
    start: int | None = None
    for match in delimiter.finditer(body):
        if start is not None:
            spans.append((start, max(start, _before_line_break(body, match.start()))))
        if match.group(1):
            return spans
        start = match.end() + (body[match.end() : match.end() + 1] == b"\n")
    if start is not None:
        spans.append((start, len(body)))
    return spans


def _before_line_break(body: bytes, pos: int) -> int:
    if body[pos - 2 : pos] == b"\r\n":
        return pos - 2
    if body[pos - 1 : pos] == b"\n":
        return pos - 1
    return pos
