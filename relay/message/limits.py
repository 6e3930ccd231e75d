"""How much work one submitted mail may make the relay do.

A hostile or broken mail must not cost more than a small multiple of its size in time or
memory (README, "Limits"): headers the relay decodes are bounded here, and the MIME walk
and the rewriter count parts, nesting, links and HTML tags against ``MessageLimits`` (the
``[smtp]`` settings). A mail over a limit is refused with ``552 5.3.4`` naming the header
or the setting (``LimitExceeded``), so that the sender does not try it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.errors import LimitExceeded

# A header field the relay decodes (Subject, the control headers) or reads parameters from
# (Content-Type): bytes with its folding, RFC 2047 encoded words, ";" parameters. Decoding
# and parameter parsing in the email package grow faster than linearly with these.
MAX_HEADER_BYTES = 16 * 1024
# The header blocks of the message and of its MIME parts, together: every field is parsed,
# at some microseconds each.
MAX_HEADER_BLOCK_BYTES = 1024 * 1024
MAX_ENCODED_WORDS = 256
MAX_HEADER_PARAMETERS = 100


@dataclass(frozen=True)
class MessageLimits:
    """Per message, for the mail whose links are tracked (the only mail that is walked)."""

    max_parts: int = 500  # MIME entities, the message itself included
    max_depth: int = 50  # multipart nesting
    max_links: int = 10_000  # link tags with an href, tracked or not
    max_html_tags: int = 200_000  # "<" in the text/html parts together


def check_header(name: str, raw: bytes, value: str, *, words: bool = True) -> None:
    """Refuse a header field that is too large to be decoded cheaply; ``raw`` is the whole
    field as received, ``value`` its unfolded value."""
    if len(raw) > MAX_HEADER_BYTES:
        raise LimitExceeded(name, f"{name} header of {len(raw)} bytes is over the limit of "
                                  f"{MAX_HEADER_BYTES} bytes")
    if words and value.count("=?") > MAX_ENCODED_WORDS:
        raise LimitExceeded(name, f"{name} header has more than {MAX_ENCODED_WORDS} encoded "
                                  "words (RFC 2047)")


def check_header_block(size: int) -> None:
    """Refuse a mail whose header blocks together are ``size`` bytes, if that is too many."""
    if size > MAX_HEADER_BLOCK_BYTES:
        raise LimitExceeded("header", f"header blocks of more than {MAX_HEADER_BLOCK_BYTES} "
                                      "bytes")


def check_parameters(name: str, raw: bytes, value: str) -> None:
    """Refuse a header whose parameters the relay reads (Content-Type) when it is too large
    or has too many parameters."""
    check_header(name, raw, value, words=False)
    if value.count(";") > MAX_HEADER_PARAMETERS:
        raise LimitExceeded(name, f"{name} header has more than {MAX_HEADER_PARAMETERS} "
                                  "parameters")


def over_limit(what: str, limit: int, setting: str) -> LimitExceeded:
    """The refusal of a mail over one of the ``MessageLimits``."""
    return LimitExceeded(setting, f"message has more than {limit} {what} "
                                  f"(limit smtp.{setting})")
