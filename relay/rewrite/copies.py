"""The recipients' copies of one mail, made from one rewrite.

The copies of a mail differ only in their links' tokens (each copy has its own message
id). So the message is walked and rewritten once, with a placeholder where each token
goes (``Placeholders``); the result is cut at the placeholders into shared pieces, and a
copy is those pieces with its own bytes put into the holes between them (``Template``).
The store keeps the pieces once and each copy's fills (store/mail.py).

A hole holds what the part's encodings make of the token, and nothing else changes, so a
copy is byte for byte what rewriting that copy on its own gives:

- a placeholder has its token's length and is made of characters that, like a token's
  (base64url and "."), every ASCII-compatible charset writes as the same single bytes;
- quoted-printable leaves all of them as they are and breaks lines by length alone, so a
  token takes the placeholder's characters, soft line breaks at the same places;
- in base64 the 4-character groups that cover the token are encoded again, line breaks
  kept;
- a part in another charset (UTF-16, UTF-7, EBCDIC) is encoded again whole for each copy
  (``PartHole``, the plain path; ``fast=False`` takes it for every part, and the tests
  compare the two).

Every hole is checked when it is made: filled with the placeholders it must give back
the template's own bytes, or the part takes the plain path.
"""

from __future__ import annotations

import base64
import re
import secrets
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from relay.message.mime import MimeWalk, RewrittenPart, segment_bytes
from relay.rewrite.links import Link

TOKEN_ALPHABET = string.ascii_letters + string.digits + "-_."
_NONCE_LENGTH = 16
_NUMBER_LENGTH = 6
_BASE64_LINE = 76  # characters per line of base64.encodebytes


@dataclass(frozen=True)
class Slot:
    """A tracked link (or the honeypot) whose token each copy puts in its own place."""

    number: int
    link: Link
    placeholder: str


class Placeholders:
    """The placeholders of one message: each as long as its link's tokens, and made of a
    random nonce (no sender can write one in advance), the slot's number and filler."""

    def __init__(self, token_length: Callable[[Link], int]) -> None:
        self.nonce = secrets.token_hex(_NONCE_LENGTH // 2)
        self.slots: list[Slot] = []
        self._token_length = token_length

    def __call__(self, link: Link) -> str:
        number = len(self.slots)
        length = self._token_length(link)
        text = f"{self.nonce}{number:0{_NUMBER_LENGTH}d}".ljust(length, "x")
        if len(text) != length:
            raise ValueError(f"a token of {length} characters is too short for a placeholder")
        self.slots.append(Slot(number, link, text))
        return text


@dataclass(frozen=True)
class TokenHole:
    """A token in an identity or quoted-printable body: its characters, with the soft
    line breaks where the placeholder had them."""

    slot: int
    breaks: tuple[int, ...]  # a soft line break before these character positions
    soft_break: bytes

    def fill(self, tokens: Sequence[str | None]) -> bytes:
        token = _token(tokens, self.slot)
        if not self.breaks:
            return token
        pieces, pos = [], 0
        for at in self.breaks:
            pieces += [token[pos:at], self.soft_break]
            pos = at
        pieces.append(token[pos:])
        return b"".join(pieces)


@dataclass(frozen=True)
class Base64Hole:
    """The base64 characters that cover one or more tokens, line breaks included."""

    data: bytes  # the bytes those characters encode, with the placeholders
    tokens: tuple[tuple[int, int], ...]  # (offset in ``data``, slot)
    first_char: int  # the position of the first character in the part's base64 text
    eol: bytes

    def fill(self, tokens: Sequence[str | None]) -> bytes:
        region = bytearray(self.data)
        for offset, slot in self.tokens:
            token = _token(tokens, slot)
            region[offset : offset + len(token)] = token
        chars = base64.b64encode(bytes(region))
        first = _BASE64_LINE - self.first_char % _BASE64_LINE
        lines = [chars[:first]]
        lines += [chars[at : at + _BASE64_LINE] for at in range(first, len(chars), _BASE64_LINE)]
        return self.eol.join(lines)


@dataclass(frozen=True)
class PartHole:
    """A whole part body, encoded again for each copy: the plain path."""

    pieces: tuple[str, ...]  # the part's text around its placeholders
    slots: tuple[int, ...]
    part: RewrittenPart

    def fill(self, tokens: Sequence[str | None]) -> bytes:
        text = [self.pieces[0]]
        for slot, piece in zip(self.slots, self.pieces[1:], strict=True):
            text += [_token(tokens, slot).decode("ascii"), piece]
        encoded = self.part.form.encoding_of("".join(text))
        if encoded.transfer != self.part.encoded.transfer:
            raise ValueError("a copy's part changed its transfer encoding")
        return encoded.body


Hole = TokenHole | Base64Hole | PartHole


@dataclass(frozen=True)
class Template:
    """A message as shared pieces and the holes between them (one fewer)."""

    pieces: tuple[bytes, ...]
    holes: tuple[Hole, ...]

    @classmethod
    def plain(cls, raw: bytes) -> Template:
        return cls((raw,), ())

    def slots(self) -> set[int]:
        """The slots whose tokens the copies need."""
        out: set[int] = set()
        for hole in self.holes:
            if isinstance(hole, TokenHole):
                out.add(hole.slot)
            elif isinstance(hole, Base64Hole):
                out.update(slot for _, slot in hole.tokens)
            else:
                out.update(hole.slots)
        return out

    def fills(self, tokens: Sequence[str | None]) -> tuple[bytes, ...]:
        """A copy's bytes for each hole, ``tokens`` by slot number."""
        return tuple(hole.fill(tokens) for hole in self.holes)

    def copy(self, fills: Sequence[bytes]) -> bytes:
        return assemble(self.pieces, fills)


def assemble(pieces: Sequence[bytes], fills: Sequence[bytes]) -> bytes:
    """One copy: the pieces with the fills between them."""
    if len(fills) != len(pieces) - 1:
        raise ValueError(f"{len(fills)} fills for {len(pieces)} pieces")
    out = [pieces[0]]
    for fill, piece in zip(fills, pieces[1:], strict=True):
        out += [fill, piece]
    return b"".join(out)  # bytes only: the join lets other threads run (CPython)


def make_template(
    raw: bytes, walk: MimeWalk, placeholders: Placeholders, *, fast: bool = True
) -> Template:
    """The walked message (``walk`` of ``raw``) cut at its placeholders."""
    texts = [s.placeholder for s in placeholders.slots]
    pieces: list[bytes] = []
    holes: list[Hole] = []
    current: list[bytes] = []
    for segment in walk.segments:
        if not isinstance(segment, RewrittenPart):
            current.append(segment_bytes(raw, segment))
            continue
        body, pos = segment.encoded.body, 0
        for start, end, hole in _part_holes(segment, placeholders.nonce, texts, fast):
            current.append(body[pos:start])
            pieces.append(b"".join(current))
            holes.append(hole)
            current, pos = [], end
        current.append(body[pos:])
    pieces.append(b"".join(current))
    return Template(tuple(pieces), tuple(holes))


Span = tuple[int, int, Hole]  # a hole at body[start:end]


def _part_holes(part: RewrittenPart, nonce: str, texts: list[str], fast: bool) -> list[Span]:
    found = _placeholders_in(part.html, nonce, texts)
    if not found:
        return []
    if fast and _ascii_compatible(part.form.codec):
        spans = _patch_holes(part, nonce, [slot for _, slot in found], texts)
        if spans is not None:
            return spans
    pieces, pos = [], 0
    for at, slot in found:
        pieces.append(part.html[pos:at])
        pos = at + len(texts[slot])
    pieces.append(part.html[pos:])
    hole = PartHole(tuple(pieces), tuple(slot for _, slot in found), part)
    return [(0, len(part.encoded.body), hole)]


def _placeholders_in(text: str, nonce: str, texts: list[str]) -> list[tuple[int, int]]:
    """(offset, slot) of each placeholder in ``text``, in order."""
    found = []
    at = text.find(nonce)
    while at >= 0:
        number = text[at + len(nonce) : at + len(nonce) + _NUMBER_LENGTH]
        if number.isascii() and number.isdigit() and int(number) < len(texts):
            slot = int(number)
            if text.startswith(texts[slot], at):
                found.append((at, slot))
        at = text.find(nonce, at + 1)
    return found


def _ascii_compatible(codec: str) -> bool:
    """Whether the codec writes every token character as its ASCII byte, in any context."""
    if codec.replace("_", "-").lower() in ("utf-7", "u7", "unicode-1-1-utf-7"):
        return False
    try:
        return TOKEN_ALPHABET.encode(codec) == TOKEN_ALPHABET.encode("ascii")
    except (UnicodeError, LookupError):
        return False


def _patch_holes(
    part: RewrittenPart, nonce: str, slots: list[int], texts: list[str]
) -> list[Span] | None:
    """The holes of a part whose placeholders stay whole in its bytes; None when they do
    not (the caller takes the plain path)."""
    data, body, transfer = part.encoded.data, part.encoded.body, part.encoded.transfer
    offsets = _placeholders_in_data(data, nonce.encode("ascii"), slots, texts)
    if offsets is None:
        return None
    if transfer == "identity":
        spans: list[Span] = [(k, k + len(texts[s]), TokenHole(s, (), b"")) for k, s in offsets]
    elif transfer == "quoted-printable":
        found = _quoted_printable_holes(body, offsets, texts, b"=" + part.form.eol)
        if found is None:
            return None
        spans = found
    else:
        spans = _base64_holes(data, offsets, texts, part.form.eol)
    placeholders: list[str | None] = list(texts)
    for start, end, hole in spans:
        if hole.fill(placeholders) != body[start:end]:
            return None
    return spans


def _placeholders_in_data(
    data: bytes, nonce: bytes, slots: list[int], texts: list[str]
) -> list[tuple[int, int]] | None:
    offsets = []
    at = data.find(nonce)
    for slot in slots:
        if at < 0 or not data.startswith(texts[slot].encode("ascii"), at):
            return None
        offsets.append((at, slot))
        at = data.find(nonce, at + len(texts[slot]))
    return offsets if at < 0 else None


def _quoted_printable_holes(
    body: bytes, offsets: list[tuple[int, int]], texts: list[str], soft_break: bytes
) -> list[Span] | None:
    spans: list[Span] = []
    pos = 0
    # The nonce every placeholder starts with, soft line breaks allowed inside it.
    nonce = texts[offsets[0][1]].encode("ascii")[:_NONCE_LENGTH]
    optional_break = b"(?:" + re.escape(soft_break) + b")?"
    start_of = re.compile(optional_break.join(re.escape(nonce[i : i + 1])
                                              for i in range(len(nonce))))
    for _, slot in offsets:
        text = texts[slot].encode("ascii")
        match = start_of.search(body, pos)
        if match is None:
            return None
        breaks, end, count = [], match.start(), 0
        while count < len(text):
            if count and body.startswith(soft_break, end):
                breaks.append(count)
                end += len(soft_break)
            elif body[end : end + 1] == text[count : count + 1]:
                end += 1
                count += 1
            else:
                return None
        spans.append((match.start(), end, TokenHole(slot, tuple(breaks), soft_break)))
        pos = end
    return spans


def _base64_holes(
    data: bytes, offsets: list[tuple[int, int]], texts: list[str], eol: bytes
) -> list[Span]:
    # The 3-byte groups each token touches; tokens that share a group share a hole.
    regions: list[tuple[int, int, list[tuple[int, int]]]] = []
    for at, slot in offsets:
        start, end = at // 3 * 3, min(len(data), -(-(at + len(texts[slot])) // 3) * 3)
        if regions and start < regions[-1][1]:
            regions[-1] = (regions[-1][0], max(end, regions[-1][1]), regions[-1][2])
        else:
            regions.append((start, end, []))
        regions[-1][2].append((at, slot))
    spans: list[Span] = []
    for start, end, members in regions:
        first, last = start // 3 * 4, -(-end // 3) * 4 - 1  # characters, inclusive
        hole = Base64Hole(data[start:end], tuple((at - start, s) for at, s in members), first,
                          eol)
        spans.append((_line_position(first, eol), _line_position(last, eol) + 1, hole))
    return spans


def _line_position(char: int, eol: bytes) -> int:
    """The offset of a base64 character in the body, line ends counted."""
    return char + char // _BASE64_LINE * len(eol)


def _token(tokens: Sequence[str | None], slot: int) -> bytes:
    token = tokens[slot]
    if token is None:
        raise ValueError(f"no token for slot {slot}")
    return token.encode("ascii")
