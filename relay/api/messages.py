"""A message through the API (docs/api.md): ``GET /v1/messages/{id}`` (the SDK's MessageData),
its events (``/events``: queued, each delivery attempt, its clicks and opens; machine
clicks and opens only with ``include_machine_events``) and its links with their clicks (``/links``).

Each recipient's copy is a message of its own, with its own id: the one the send answered
with, or the ``message_id`` of a webhook."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from aiohttp import web

from relay.api.common import (
    api_of,
    cursor_page,
    json_response,
    page_request,
    query_bool,
    query_list,
    require_team,
)
from relay.api.shapes import (
    MessageData,
    MessageEventData,
    MessageLink,
    MessageLinks,
    Recipient,
)
from relay.api.store import MessageReportStore
from relay.errors import BadInput, NotFound
from store.events import EventRecord
from store.records import DeliveryAttempt, MessageInfo
from store.reports import MessageLinkCounts
from tracker.webhooks.events import iso_timestamp

EVENT_SORTS = ("timestamp", "-timestamp", "event", "-event")
# A spool outcome as the SDK's MessageStatus, a delivery attempt as its MessageEventType.
MESSAGE_STATUS: Final[Mapping[str, str]] = MappingProxyType(
    {"queued": "queued", "delivered": "delivered", "failed": "failed"})
ATTEMPT_EVENT: Final[Mapping[str, str]] = MappingProxyType(
    {"delivered": "delivered", "temporary": "soft_bounced", "permanent": "hard_bounced"})


async def get_message(request: web.Request) -> web.Response:
    require_team(request)
    message = await _message(request)
    return json_response(message_data(message))


async def message_events(request: web.Request) -> web.Response:
    require_team(request)
    message = await _message(request)
    store: MessageReportStore = api_of(request).store
    include_machine = bool(query_bool(request, "include_machine_events"))
    sort = _sort(request)
    page = page_request(request)
    # Clicks are fetched in the page's order, as many as the page can reach; the few
    # lifecycle events are merged in.
    clicks = await store.message_click_events(
        message.id, include_machine=include_machine, descending=sort == "-timestamp",
        limit=page.offset + page.size + 1, include_opens=True,
    )
    events = _lifecycle(message, await store.delivery_attempts(message.id))
    events += [(e.clicked_at, _open(message, e) if e.opened else _click(message, e, anchor))
               for e, anchor in clicks]
    if sort.endswith("event"):
        events.sort(key=lambda e: e[0])
        events.sort(key=lambda e: e[1].event, reverse=sort.startswith("-"))
    else:
        events.sort(key=lambda e: e[0], reverse=sort.startswith("-"))
    chunk = [data for _, data in events[page.offset : page.offset + page.size]]
    more = len(events) > page.offset + page.size
    return json_response(cursor_page(request, page, chunk, more))


async def message_links(request: web.Request) -> web.Response:
    """Every tracked link of the message with its clicks (clickrelay's addition)."""
    require_team(request)
    message = await _message(request)
    store: MessageReportStore = api_of(request).store
    include_machine = bool(query_bool(request, "include_machine"))
    links = await store.message_link_counts(message.id)
    return json_response(MessageLinks(message_id=message.id,
                                      data=[_link(link, include_machine) for link in links]))


async def _message(request: web.Request) -> MessageInfo:
    store: MessageReportStore = api_of(request).store
    message_id = request.match_info["message_id"]
    message = await store.get_message(message_id)
    if message is None:
        raise NotFound(f"No message {message_id!r}.")
    return message


def message_data(m: MessageInfo) -> MessageData:
    """The SDK's MessageData of one recipient's copy."""
    return MessageData(
        id=m.id,
        type="outbound",
        status=MESSAGE_STATUS.get(m.status, m.status),
        delivery_mode="live",
        sandbox_result=None,
        status_changed_at=iso_timestamp(m.finished_at or m.created_at),
        scheduled_at=None,
        tag=m.tag,
        tags=[],
        from_email=m.mail_from,
        from_name=None,
        reply_to=None,
        subject=m.subject,
        to=[Recipient(email=m.rcpt_to, name=None, sandbox_result=None)],
        cc=None,
        bcc=None,
        attachments=None,
        metadata=dict(m.metadata),
        route_id=m.route_id,
        created_at=iso_timestamp(m.created_at),
        track_clicks=m.track_clicks,
        attempts=m.attempts,
        last_error=m.last_error,
    )


def _lifecycle(m: MessageInfo, attempts: Sequence[DeliveryAttempt]
               ) -> list[tuple[int, MessageEventData]]:
    events = [(m.created_at, _event(m, "queued", m.created_at, None))]
    for a in attempts:
        details = {"attempt": a.attempt, "code": a.code, "detail": a.detail,
                   "duration_ms": a.duration_ms}
        events.append((a.at, _event(m, ATTEMPT_EVENT.get(a.outcome, a.outcome), a.at, details)))
    if m.status == "failed" and m.finished_at and not any(a.outcome == "permanent"
                                                          for a in attempts):
        events.append((m.finished_at, _event(m, "failed", m.finished_at,
                                              {"reason": m.last_error})))
    return events


def _click(m: MessageInfo, e: EventRecord, anchor_text: str) -> MessageEventData:
    metadata = {
        "destination_url": e.destination, "link_index": e.link_index,
        "anchor_text": anchor_text, "first_click": e.first_click, **_engagement(e),
    }
    return _event(m, "clicked", e.clicked_at, metadata)


def _open(m: MessageInfo, e: EventRecord) -> MessageEventData:
    return _event(m, "opened", e.clicked_at, {"first_open": e.first_click, **_engagement(e)})


def _engagement(e: EventRecord) -> dict[str, Any]:
    """What a click's and an open's event say alike: the client and the verdict."""
    bot = {
        "detected": e.machine, "probability": e.probability, "classification": e.classification,
        "proxy_type": e.proxy_type, "reason_codes": list(e.reason_codes), "machine": e.machine,
        "counts_for_metrics": e.counts_for_metrics,
    }
    return {
        "device_type": e.device_type, "client_type": e.client_type,
        "client_name": e.client_name, "user_agent": e.user_agent,
        "classification": e.classification, "counts_for_metrics": e.counts_for_metrics,
        "reason_codes": list(e.reason_codes), "rules": list(e.rules),
        "rules_version": e.rules_version, "bot": bot,
    }


def _event(m: MessageInfo, name: str, at: int, metadata: dict[str, Any] | None
           ) -> MessageEventData:
    return MessageEventData(message_id=m.id, event=name, tag=m.tag, tags=[],
                            metadata=metadata, timestamp=iso_timestamp(at))


def _link(link: MessageLinkCounts, include_machine: bool) -> MessageLink:
    clicks = link.human + link.machine if include_machine else link.human
    return MessageLink(
        link_index=link.link_index,
        destination_url=link.destination,
        anchor_text=link.anchor_text,
        clicked=clicks,
        unique_clicked=1 if clicks else 0,  # one copy, one recipient
        machine_clicked=link.machine if include_machine else None,
    )


def _sort(request: web.Request) -> str:
    sorts = query_list(request, "sort") or ["timestamp"]
    if sorts[0] not in EVENT_SORTS:
        raise BadInput("sort", f"sort: one of {', '.join(EVENT_SORTS)}")
    return sorts[0]
