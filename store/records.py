"""The records the store takes and gives back; plain frozen data, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


@dataclass(frozen=True)
class LinkRecord:
    index: int
    destination: str
    anchor_text: str = ""
    honeypot: bool = False


@dataclass(frozen=True)
class SharedBody:
    """The bytes the copies of one submission share: pieces, between which each copy
    puts its own fills (its links' tokens, relay/rewrite/copies.py). Kept once, not per copy."""

    id: str
    pieces: tuple[bytes, ...] = field(repr=False)  # () once the body is in its file
    lengths: tuple[int, ...] = ()  # the pieces' lengths, for a body already in its file

    @property
    def in_file(self) -> bool:
        """Written and synced to its file (store.bodies) by whoever made it."""
        return not self.pieces

    def piece_lengths(self) -> tuple[int, ...]:
        return tuple(map(len, self.pieces)) if self.pieces else self.lengths


@dataclass(frozen=True)
class NewMessage:
    """One recipient's copy of an accepted mail, ready to be spooled: its ``body``, or
    a ``shared`` body and its own ``fills`` for the holes between the pieces."""

    id: str
    submission_id: str
    project_id: str
    route_id: str
    mail_from: str
    rcpt_to: str
    subject: str | None
    tag: str | None
    metadata: dict[str, str]
    track_clicks: bool
    created_at: int
    body: bytes = field(repr=False)
    links: tuple[LinkRecord, ...] = ()
    shared: SharedBody | None = None
    fills: tuple[bytes, ...] = field(default=(), repr=False)
    fills_span: tuple[int, int] | None = None  # (offset, size) of the fills in its file
    track_opens: bool = False  # the copy has an open pixel


@dataclass(frozen=True)
class AnsweredKey:
    """An idempotency key and the answer its submission got."""

    project_id: str
    scope: str
    key: str
    response: str


@dataclass(frozen=True)
class SpooledMessage:
    """A spooled copy claimed for delivery."""

    id: str
    project_id: str
    mail_from: str
    rcpt_to: str
    body: bytes = field(repr=False)
    attempts: int
    created_at: int


@dataclass(frozen=True)
class MessageInfo:
    id: str
    submission_id: str
    project_id: str
    route_id: str
    mail_from: str
    rcpt_to: str
    subject: str | None
    tag: str | None
    metadata: dict[str, str]
    track_clicks: bool
    created_at: int
    status: str
    attempts: int
    next_attempt_at: int
    last_error: str | None
    finished_at: int | None
    track_opens: bool = False


@dataclass(frozen=True)
class DeliveryAttempt:
    attempt: int
    at: int
    outcome: str
    code: int | None
    detail: str | None
    duration_ms: int


@dataclass(frozen=True)
class SpoolSummary:
    queued: int
    claimed: int
    oldest_queued_at: int | None
    delivered: int
    failed: int


def row_dict(row: Any) -> dict[str, Any]:
    return {k: row[k] for k in row}


class Observation(NamedTuple):
    """One request to a valid tracking link, as the tracker stores it for classification:
    the token's claims, the request's shape, and the client address reduced to a network
    label and a keyed hash (never the address itself). A named tuple rather than a frozen
    dataclass: one is built on every click, and it is eight times cheaper to make."""

    message_id: str
    link_index: int
    destination: str
    project_sid: str
    at: int
    method: str
    user_agent: str
    headers: dict[str, str]  # lower-case names: accept, accept-language, sec-fetch-*, …
    network: str | None
    addr_hash: str
    promote_after: int
    id: int | None = None  # given by the store
    state: str = "pending"
