"""Turning a text part's body into text and back: transfer encoding and charset.

``relay.message.mime`` walks the message; this module decodes one ``text/html`` body (RFC 2045
transfer encodings, the declared charset) so that it can be rewritten, and encodes the
result the same way. Real mail declares charsets that do not exist or do not match its
bytes; decoding keeps every byte it cannot interpret (``surrogateescape``) and is checked
to round-trip, so what the rewrite leaves alone goes out exactly as it came in.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import quopri
from dataclasses import dataclass
from types import MappingProxyType

MAX_LINE = 998  # octets per line, CRLF excluded (RFC 5322 §2.1.1)


class BodyError(ValueError):
    """The body cannot be decoded faithfully; the part is forwarded unchanged."""


# Labels whose bytes mail clients read with a wider table (WHATWG Encoding), and labels
# Python does not know under the name mailers use.
_CHARSET_ALIASES = MappingProxyType({
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso-8859-9": "cp1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "gb2312": "gbk",
    "x-gbk": "gbk",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "big5": "big5hkscs",
    "x-mac-cyrillic": "mac_cyrillic",
    "x-mac-roman": "mac_roman",
    "x-mac-ukrainian": "mac_cyrillic",
    "utf8": "utf-8",
})
_TRANSFER_ALIASES = MappingProxyType({
    "quoted printable": "quoted-printable",
    "quoted_printable": "quoted-printable",
    "quotedprintable": "quoted-printable",
    "base-64": "base64",
})


@dataclass(frozen=True)
class TextBody:
    """A decoded body and how to encode text back into the same form."""

    text: str
    codec: str  # the Python codec used both ways
    transfer: str  # "quoted-printable", "base64" or "identity"
    eol: bytes
    suffix: bytes  # line ends after base64 data, kept as they were
    seven_bit: bool  # an identity body, not declared 8bit or binary, that is all ASCII

    def encode(self, text: str) -> tuple[bytes, bool]:
        """The body for ``text``, and whether it had to become quoted-printable: a line
        would exceed 998 octets, or 8-bit data would appear in a 7-bit body."""
        encoded = self.encoding_of(text)
        return encoded.body, encoded.transfer != self.transfer

    def encoding_of(self, text: str) -> EncodedText:
        """``encode``, with the steps between: the text in the charset, then in the
        transfer encoding (relay/rewrite/copies.py patches both)."""
        data = encode_text(text, self.codec)
        if self.transfer == "base64":
            encoded = base64.encodebytes(data).rstrip(b"\n").replace(b"\n", self.eol)
            return EncodedText(data, encoded + self.suffix, "base64")
        if self.transfer == "quoted-printable":
            return EncodedText(data, encode_quoted_printable(data, self.eol), self.transfer)
        if _longest_line(data) > MAX_LINE or (self.seven_bit and not data.isascii()):
            return EncodedText(data, encode_quoted_printable(data, self.eol), "quoted-printable")
        return EncodedText(data, data, "identity")


@dataclass(frozen=True)
class EncodedText:
    data: bytes  # the text in the part's charset
    body: bytes  # ``data`` in ``transfer``, as the part carries it
    transfer: str  # "quoted-printable", "base64" or "identity"


def decode_body(
    body: bytes, transfer_encoding: str | None, charset: str | None, eol: bytes
) -> TextBody:
    transfer = transfer_name(transfer_encoding)
    suffix = b""
    if transfer == "base64":
        stripped = body.rstrip(b"\r\n")
        suffix = body[len(stripped) :]
        try:
            data = base64.b64decode(stripped)
        except (binascii.Error, ValueError) as exc:
            raise BodyError(f"invalid base64: {exc}") from exc
    elif transfer == "quoted-printable":
        data = quopri.decodestring(body)
    else:
        data = body
    text, codec = decode_text(data, charset)
    declared = (transfer_encoding or "").split(";")[0].strip().lower()
    eight_bit = declared in ("8bit", "8bits", "binary")
    seven_bit = transfer == "identity" and not eight_bit and data.isascii()
    return TextBody(text, codec, transfer, eol, suffix, seven_bit)


def transfer_name(value: str | None) -> str:
    """The transfer encoding a part uses. Unknown and misspelt values that are not
    recognisably quoted-printable or base64 are read as the identity: that is what
    clients display, and only the rewritten hrefs would change."""
    name = (value or "").split(";")[0].strip().lower()
    name = _TRANSFER_ALIASES.get(name, name)
    return name if name in ("quoted-printable", "base64") else "identity"


def charset_codec(label: str | None) -> str | None:
    """The Python codec for a declared charset; None when the label is missing, says
    no more than US-ASCII, or is unknown."""
    name = (label or "").strip().strip("\"'").strip().lower()
    name = name.rpartition("=")[2].strip("\"' ")  # seen: charset="charset=us-ascii"
    if name in ("", "us-ascii", "ascii", "ansi_x3.4-1968"):
        return None
    name = _CHARSET_ALIASES.get(name, name)
    for candidate in (name, name.removeprefix("x-")):
        try:
            codec = codecs.lookup(candidate).name
            "".encode(codec)  # LookupError for bytes-to-bytes codecs such as "base64"
        except LookupError:
            continue
        return codec
    return None


def decode_text(data: bytes, charset: str | None) -> tuple[str, str]:
    """``data`` as text, and the codec that encodes that text back to the same bytes."""
    codec = charset_codec(charset)
    if codec is None:
        if data.isascii():
            return data.decode("ascii"), "ascii"
        # 8-bit data under no (or an unknown) label: UTF-8 if it is that, else what
        # clients assume for legacy mail.
        tried: tuple[str, ...] = ("utf-8", "cp1252")
    else:
        tried = (_with_byte_order(codec, data),)
    for name in tried:
        try:
            return data.decode(name), name
        except UnicodeDecodeError:
            continue
    # A declared charset that does not match the bytes: keep what does not decode.
    name = tried[-1]
    try:
        text = data.decode(name, "surrogateescape")
        faithful = text.encode(name, "surrogateescape") == data
    except UnicodeError:  # multi-byte codecs cannot keep every stray byte
        faithful = False
    if not faithful:
        raise BodyError(f"cannot decode as {charset or 'us-ascii'} without losing bytes")
    return text, name


def _with_byte_order(codec: str, data: bytes) -> str:
    """A byte order for UTF-16/32 read from the BOM (kept as U+FEFF in the text), big
    endian without one (RFC 2781), so encoding does not add or flip a BOM."""
    if codec in ("utf-16", "utf-32"):
        little = data.startswith(codecs.BOM_UTF32_LE if codec == "utf-32" else codecs.BOM_UTF16_LE)
        return f"{codec}-{'le' if little else 'be'}"
    return codec


def encode_text(text: str, codec: str) -> bytes:
    """``text`` in ``codec``; bytes kept by ``surrogateescape`` come back as they were and
    characters the charset cannot hold become numeric character references."""
    try:
        return text.encode(codec, "surrogateescape")
    except UnicodeEncodeError:
        pass
    # Each distinct character is tried once, so this stays linear in the text.
    references = {ord(ch): f"&#{ord(ch)};" for ch in set(text) if not _encodable(ch, codec)}
    return text.translate(references).encode(codec, "surrogateescape")


def _encodable(ch: str, codec: str) -> bool:
    try:
        ch.encode(codec, "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


def encode_quoted_printable(data: bytes, eol: bytes) -> bytes:
    """RFC 2045 quoted-printable with soft line breaks, lines ending in ``eol``."""
    out = []
    for line in data.split(eol):
        # One line at a time, so that b2a_qp never sees a line ending of its own; a stray
        # CR would otherwise go out raw.
        encoded = quopri.encodestring(line).replace(b"\r", b"=0D")
        out.append(encoded.replace(b"\n", eol))
    return eol.join(out)


def has_long_line(data: bytes, start: int = 0, end: int | None = None) -> bool:
    """Whether a line of ``data[start:end]`` is longer than MAX_LINE octets without its
    line end; a jump per line of up to a thousand octets, not a look at every byte."""
    end = len(data) if end is None else end
    pos = start
    while end - pos > MAX_LINE:
        cut = data.rfind(b"\n", pos, pos + MAX_LINE + 1)
        if cut >= 0:
            pos = cut + 1
        elif data.startswith(b"\r\n", pos + MAX_LINE, end):  # exactly MAX_LINE, then CRLF
            pos += MAX_LINE + 2
        else:
            return True
    return False


def _longest_line(data: bytes) -> int:
    return max((len(line.rstrip(b"\r")) for line in data.split(b"\n")), default=0)
