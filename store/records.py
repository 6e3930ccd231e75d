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
class MessageNames:
    """What a copy's message says of its people, beyond the envelope."""

    from_name: str | None = None  # the From field's display name
    rcpt_name: str | None = None  # the recipient's name in To or Cc
    reply_to: tuple[str, ...] = ()  # the Reply-To addresses


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
    notice_of: str | None = None  # a delivery status notification: the copy it reports on
    mail_params: tuple[str, ...] = ()  # the submission's SMTPUTF8 and BODY=8BITMIME
    names: MessageNames = field(default_factory=MessageNames)
    track_opens: bool = False  # the copy has an open pixel


@dataclass(frozen=True)
class ConfigItem:
    """A route or a webhook of the configuration file, and a hash of its settings."""

    kind: str  # route | webhook
    id: str
    fingerprint: str


@dataclass(frozen=True)
class ItemTimes:
    created_at: int  # µs: when clickrelay first saw the item
    updated_at: int  # µs: when it first saw the item's current settings


@dataclass(frozen=True)
class MessageListFilter:
    """Which messages ``GET /v1/messages`` lists; empty fields do not filter."""

    search: str | None = None  # sender, recipient or subject contains it
    from_email: str | None = None
    subject: str | None = None
    tag: str | None = None
    project_id: str | None = None
    route_id: str | None = None
    status: str | None = None
    since: int | None = None  # µs, created at or after
    until: int | None = None  # µs, created before
    sort: str = "-created_at"  # a column, "-" for descending


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
    route_id: str = ""
    subject: str | None = None
    tag: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    notice_of: str | None = None  # a delivery status notification: the copy it reports on
    mail_params: tuple[str, ...] = ()  # the submission's SMTPUTF8 and BODY=8BITMIME


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
    names: MessageNames = field(default_factory=MessageNames)
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


@dataclass(frozen=True)
class DashboardSession:
    """A signed-in browser (store/dashboard.py); ``id_hash`` is the SHA-256 of its cookie."""

    id_hash: str
    user_name: str  # '' when signed in with the team token
    credential: str  # a digest of what it signed in with (relay/dashboard/auth.py)
    csrf_token: str = field(repr=False)
    created_at: int
    expires_at: int


@dataclass(frozen=True)
class MessageListRow:
    """One line of the dashboard's message list."""

    message: MessageInfo
    human_clicks: int


@dataclass(frozen=True)
class ActivityBucket:
    """Clicks of one period of the activity chart: ``human`` and ``unique_human`` (messages
    with a human click), and ``machine`` per classification."""

    start: int
    human: int
    unique_human: int
    machine: dict[str, int]
    human_opens: int = 0  # opens people made, and the messages they opened
    unique_human_opens: int = 0
