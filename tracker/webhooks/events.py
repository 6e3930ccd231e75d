"""Click and open events and the webhook envelope, as data, turned into JSON in one place.

``ClickEvent`` is the ``data`` of a ``message.clicked`` webhook, field for field as in
Lettermint's click tracking document, ``OpenEvent`` that of ``message.opened``; ``Envelope``
wraps any event (docs/webhooks.md). The body is written once, when the delivery is put in
the outbox, so that every attempt sends the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any

import orjson

from store.events import OPEN_LINK_INDEX, EventRecord
from store.ids import new_id
from store.records import MessageInfo
from store.webhooks import NewDelivery
from tracker.config import WebhookConfig

MESSAGE_CLICKED = "message.clicked"
# A copy's delivery (docs/webhooks.md): accepted by the upstream; a 4xx, to be retried; a
# 5xx; retries ran out, or it was refused before it was sent.
MESSAGE_DELIVERED = "message.delivered"
MESSAGE_SOFT_BOUNCED = "message.soft_bounced"
MESSAGE_HARD_BOUNCED = "message.hard_bounced"
MESSAGE_FAILED = "message.failed"
DELIVERY_EVENTS = (MESSAGE_DELIVERED, MESSAGE_SOFT_BOUNCED, MESSAGE_HARD_BOUNCED, MESSAGE_FAILED)
MESSAGE_OPENED = "message.opened"
# The link index of a route's hidden honeypot link (docs/classification.md): above every real link's
# (at most 1000 per message), so that it never shifts them.
HONEYPOT_LINK_INDEX = 1_000_000
__all__ = ["HONEYPOT_LINK_INDEX", "OPEN_LINK_INDEX"]  # the open pixel's: store/events.py


@dataclass(frozen=True)
class Bot:
    """The verdict on a click, as the webhook reports it."""

    detected: bool
    probability: int  # 0–100, higher = more likely automated
    classification: str  # genuine | privacy_proxy | security_scanner | link_preview | generic_bot
    proxy_type: str | None
    reason_codes: tuple[str, ...]  # Lettermint's broad categories
    machine: bool
    counts_for_metrics: bool


@dataclass(frozen=True)
class ClickEvent:
    """The ``data`` of ``message.clicked``; the field order is the document's."""

    message_id: str
    subject: str | None
    metadata: Mapping[str, str]
    tag: str | None
    recipient: str | None
    clicked_at: str  # ISO-8601 UTC with milliseconds and Z
    destination_url: str
    link_index: int
    anchor_text: str | None
    first_click: bool
    device_type: str | None
    client_type: str | None
    client_name: str | None
    user_agent: str | None
    bot: Bot


@dataclass(frozen=True)
class SmtpResponse:
    """The upstream's answer, as Lettermint reports it."""

    status_code: int | None
    enhanced_status_code: str | None
    content: str | None


@dataclass(frozen=True)
class DeliveryEvent:
    """The ``data`` of ``message.delivered``, ``.soft_bounced``, ``.hard_bounced`` and
    ``.failed``: the message's fields, the upstream's reply (``response`` as Lettermint
    has it; ``smtp_code`` and ``smtp_message`` the same, flat) and when it happened."""

    message_id: str
    subject: str | None
    metadata: Mapping[str, str]
    tag: str | None
    recipient: str
    response: SmtpResponse
    smtp_code: int | None
    smtp_message: str | None
    timestamp: str  # ISO-8601 UTC with milliseconds and Z


@dataclass(frozen=True)
class OpenEvent:
    """The ``data`` of ``message.opened`` (docs/opens.md), in Lettermint's field order."""

    message_id: str
    subject: str | None
    metadata: Mapping[str, str]
    tag: str | None
    recipient: str | None
    opened_at: str  # ISO-8601 UTC with milliseconds and Z
    first_open: bool
    device_type: str | None
    client_type: str | None
    client_name: str | None
    user_agent: str | None
    bot: Bot


@dataclass(frozen=True)
class Envelope:
    id: str  # the delivery id: the same on every attempt
    event: str
    timestamp: str  # ISO-8601 UTC with milliseconds and Z
    data: ClickEvent | DeliveryEvent | OpenEvent | Mapping[str, Any] = field(repr=False)


def deliveries_for(
    hooks: Iterable[WebhookConfig], event: str, data: ClickEvent | DeliveryEvent | OpenEvent,
    project_id: str, now: int, event_id: str | None = None,
) -> list[NewDelivery]:
    """One outbox entry per webhook, each with its own envelope id; the body written now,
    so that every attempt sends the same bytes."""
    out = []
    for hook in hooks:
        envelope = Envelope(new_id(), event, iso_timestamp(now), data)
        out.append(NewDelivery(envelope.id, project_id, hook.id, event, envelope_body(envelope),
                               now, event_id=event_id))
    return out


def click_event(event: EventRecord, message: MessageInfo | None,
                anchor_text: str | None) -> ClickEvent:
    """The ``message.clicked`` data of a stored event (``message`` is ``None`` once the
    message data has been purged)."""
    return ClickEvent(
        message_id=event.message_id,
        subject=message.subject if message else None,
        metadata=dict(message.metadata) if message else {},
        tag=message.tag if message else None,
        recipient=message.rcpt_to if message else None,
        clicked_at=iso_timestamp(event.clicked_at),
        destination_url=event.destination,
        link_index=event.link_index,
        anchor_text=anchor_text,
        first_click=event.first_click,
        device_type=event.device_type,
        client_type=event.client_type,
        client_name=event.client_name,
        user_agent=event.user_agent,
        bot=bot(event),
    )


def open_event(event: EventRecord, message: MessageInfo | None) -> OpenEvent:
    """The ``message.opened`` data of a stored open event."""
    return OpenEvent(
        message_id=event.message_id,
        subject=message.subject if message else None,
        metadata=dict(message.metadata) if message else {},
        tag=message.tag if message else None,
        recipient=message.rcpt_to if message else None,
        opened_at=iso_timestamp(event.clicked_at),
        first_open=event.first_click,
        device_type=event.device_type,
        client_type=event.client_type,
        client_name=event.client_name,
        user_agent=event.user_agent,
        bot=bot(event),
    )


def bot(event: EventRecord) -> Bot:
    return Bot(
        # docs/classification.md: detected and machine are probability ≥ 50
        detected=event.machine,
        probability=event.probability,
        classification=event.classification,
        proxy_type=event.proxy_type,
        reason_codes=event.reason_codes,
        machine=event.machine,
        counts_for_metrics=event.counts_for_metrics,
    )


def iso_timestamp(us: int) -> str:
    """``2025-01-31T12:34:56.789Z`` for a time in microseconds since the epoch."""
    seconds, micro = divmod(us, 1_000_000)
    return f"{_iso_second(seconds)}.{micro // 1000:03d}Z"


# Memoisation of a pure function: a batch's events and deliveries share their seconds.
@lru_cache(maxsize=1024)
def _iso_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None).isoformat()


def envelope_body(envelope: Envelope) -> str:
    """The exact JSON a webhook receives: compact, unicode and slashes unescaped (as
    Lettermint's own bodies are). Written by orjson, in a tenth of the standard library's
    time (a body for every webhook of every click: docs/performance.md); the same text
    as ``json.dumps`` below writes (tests/test_webhook_body_caches.py), which writes the
    rare body orjson refuses: one holding a lone surrogate (a character that is not
    Unicode) or an integer beyond 64 bits. No body holds a fraction (orjson would write
    a NaN as null where the standard library refuses it)."""
    payload = {
        "id": envelope.id,
        "event": envelope.event,
        "timestamp": envelope.timestamp,
        "data": envelope.data,
    }
    try:
        return orjson.dumps(payload, default=_plain).decode()
    except orjson.JSONEncodeError:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False, default=_plain)


def _plain(value: Any) -> Any:
    """Event dataclasses as JSON objects, field by field in declared order (orjson writes
    them so itself), and read-only mappings as objects (both write tuples as arrays). Not
    ``asdict``: it copies every value deeply, the most of a promotion's time."""
    if is_dataclass(value) and not isinstance(value, type):
        return {name: getattr(value, name) for name in _field_names(type(value))}
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# Memoisation of a pure function: a class's fields are fixed.
@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))
