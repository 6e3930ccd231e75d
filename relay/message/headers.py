"""Raw RFC 5322 header blocks, read and edited without re-serialising the message.

The relay must forward everything it does not deliberately change byte for byte
(docs/mail.md), so header fields are located as byte spans of the original text instead
of being round-tripped through ``email.message``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.header import decode_header, make_header

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class HeaderField:
    """One header field: its name, its unfolded value and its exact bytes (folding included)."""

    name: str
    value: str
    raw: bytes

    @property
    def lname(self) -> str:
        return self.name.lower()


def split_message(raw: bytes) -> tuple[bytes, bytes]:
    """Split ``raw`` into the header block (with its line ends) and the body.

    The blank line that separates them belongs to neither part; ``join_message`` puts it
    back with the line ending the message used. A message with no blank line is all header.
    """
    header_end, body_start = entity_bounds(raw)
    return raw[:header_end], raw[body_start:]


def entity_bounds(raw: bytes, start: int = 0, end: int | None = None) -> tuple[int, int]:
    """Where the header block of the entity ``raw[start:end]`` ends and its body starts
    (``split_message`` as offsets, so that a nested part is read without copying it)."""
    end = len(raw) if end is None else end
    if raw.startswith(b"\r\n", start, end):
        return start, start + 2
    if raw.startswith(b"\n", start, end):
        return start, start + 1
    match = _HEADER_END.search(raw, start, end)
    if match is None:
        return end, end
    first_eol = 2 if match.group().startswith(b"\r\n") else 1
    return match.start() + first_eol, match.end()


def line_ending(raw: bytes, start: int = 0, end: int | None = None) -> bytes:
    """The line ending a message (``raw[start:end]``) uses: CRLF unless its first line
    ends in a bare LF."""
    idx = raw.find(b"\n", start, len(raw) if end is None else end)
    if idx > start and raw[idx - 1 : idx] == b"\r":
        return b"\r\n"
    return b"\n" if idx >= 0 else b"\r\n"


def join_message(header_block: bytes, body: bytes, eol: bytes = b"\r\n") -> bytes:
    return header_block + eol + body


def parse_fields(header_block: bytes) -> list[HeaderField]:
    """The fields of a header block in order. Lines that are not fields stay attached
    to the field before them (or form a nameless field), so nothing is dropped."""
    fields: list[HeaderField] = []
    current: list[bytes] = []

    def flush() -> None:
        if not current:
            return
        raw = b"".join(current)
        match = _FIELD_NAME.match(raw)
        name = match.group(1).decode("ascii") if match else ""
        value_bytes = raw[match.end() :] if match else raw
        value = re.sub(rb"\r?\n(?=[ \t])", b"", value_bytes).strip()
        fields.append(HeaderField(name, value.decode("utf-8", "surrogateescape"), raw))
        current.clear()

    for line in header_block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and current:
            current.append(line)
            continue
        flush()
        current.append(line)
    flush()
    return fields


def get_values(fields: Iterable[HeaderField], name: str) -> list[str]:
    lname = name.lower()
    return [f.value for f in fields if f.lname == lname]


def get_value(fields: Iterable[HeaderField], name: str) -> str | None:
    values = get_values(fields, name)
    return values[0] if values else None


def decoded(value: str) -> str:
    """An RFC 2047 encoded value as text; undecodable words are kept as they are, and a
    byte that is not UTF-8 (an 8-bit header, kept by ``parse_fields`` as a surrogate)
    becomes U+FFFD, so that the result can always be stored."""
    try:
        text = str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        text = value
    return _SURROGATE.sub("\ufffd", text)


def remove_fields(header_block: bytes, drop: Callable[[HeaderField], bool]) -> bytes:
    """The header block without the fields for which ``drop`` is true; the rest unchanged."""
    return b"".join(f.raw for f in parse_fields(header_block) if not drop(f))


def fold_header_lines(header_block: bytes, limit: int, eol: bytes) -> bytes:
    """``header_block`` with each line over ``limit`` octets folded (RFC 5322 §2.2.3) at
    its last space or tab within the limit, as often as it takes; a line with no such
    place is left as it is."""
    out: list[bytes] = []
    for line in header_block.splitlines(keepends=True):
        content = line.rstrip(b"\r\n")
        while len(content) > limit:
            cut = max(content.rfind(b" ", 1, limit + 1), content.rfind(b"\t", 1, limit + 1))
            if cut <= 0 or not content[:cut].strip() or content[:cut].endswith(b":"):
                break  # nowhere to fold, or only after the field's name: no shorter
            out.append(content[:cut] + eol)
            content = content[cut:]
        out.append(content + line[len(line.rstrip(b"\r\n")) :])
    return b"".join(out)


def replace_field(header_block: bytes, name: str, new_raw: bytes) -> bytes:
    """Replace the first field called ``name`` by ``new_raw`` (a whole field with its
    line ending); append it when there is none."""
    out: list[bytes] = []
    done = False
    for f in parse_fields(header_block):
        if not done and f.lname == name.lower():
            out.append(new_raw)
            done = True
        else:
            out.append(f.raw)
    if not done:
        out.append(new_raw)
    return b"".join(out)


def split_entity(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """``raw`` as (header block, separator, body) with ``header + separator + body == raw``:
    the blank line between header and body is kept exactly as it was written."""
    header, body = split_message(raw)
    return header, raw[len(header) : len(raw) - len(body)], body
