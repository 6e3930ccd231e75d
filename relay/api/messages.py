"""Messages through the API (docs/api.md): ``GET /v1/messages`` (a page of the SDK's
MessageListData), ``GET /v1/messages/{id}`` (its MessageData),
its events (``/events``: queued, each delivery attempt, its clicks and opens; machine clicks
and opens only with ``include_machine_events``) and its links with their clicks (``/links``).

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
    query_day_start,
    query_list,
    require_team,
)
from relay.api.shapes import (
    MessageData,
    MessageEventData,
    MessageLink,
    MessageLinks,
    MessageListData,
    Recipient,
)
from relay.api.store import MessageReportStore
from relay.delivery.events import event_of
from relay.errors import BadInput, NotFound
from store.events import EventRecord
from store.mail import PERMANENT
from store.records import DeliveryAttempt, MessageInfo, MessageListFilter
from store.reports import MESSAGE_SORTS, MessageLinkCounts
from tracker.webhooks.events import iso_timestamp

EVENT_SORTS = ("timestamp", "-timestamp", "event", "-event")
# Filters of the SDK's ListMessagesQuery that clickrelay has nothing to answer with: refused,
# rather than ignored into a wrong answer.
UNSUPPORTED_FILTERS = ("filter[domain_id]", "filter[tags]", "filter[overdue]")
# A spool outcome as the SDK's MessageStatus; a delivery attempt is named as its webhook
# (relay/delivery/events.py) without the "message." prefix.
MESSAGE_STATUS: Final[Mapping[str, str]] = MappingProxyType(
    {"queued": "queued", "delivered": "delivered", "failed": "failed"})


async def get_message(request: web.Request) -> web.Response:
    require_team(request)
    message = await find_message(request)
    return json_response(message_data(message))


async def message_events(request: web.Request) -> web.Response:
    require_team(request)
    message = await find_message(request)
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
    message = await find_message(request)
    store: MessageReportStore = api_of(request).store
    include_machine = bool(query_bool(request, "include_machine"))
    links = await store.message_link_counts(message.id)
    return json_response(MessageLinks(message_id=message.id,
                                      data=[_link(link, include_machine) for link in links]))


async def find_message(request: web.Request) -> MessageInfo:
    store: MessageReportStore = api_of(request).store
    message_id = request.match_info["message_id"]
    message = await store.get_message(message_id)
    if message is None:
        raise NotFound(f"No message {message_id!r}.")
    return message


async def list_messages(request: web.Request) -> web.Response:
    """The copies, newest first unless ``sort`` says otherwise, filtered as the SDK's
    ListMessagesQuery says (docs/api.md)."""
    require_team(request)
    store: MessageReportStore = api_of(request).store
    where = _list_filter(request)
    page = page_request(request)
    if where is None:  # asks for what clickrelay never has (inbound, sandbox)
        return json_response(cursor_page(request, page, [], False))
    rows = await store.list_messages(where, offset=page.offset, limit=page.size + 1)
    items = [message_list_item(m) for m in rows[: page.size]]
    return json_response(cursor_page(request, page, items, len(rows) > page.size))


def message_list_item(m: MessageInfo) -> MessageListData:
    """The SDK's MessageListData of one recipient's copy."""
    return MessageListData(
        id=m.id,
        type="outbound",
        status=MESSAGE_STATUS.get(m.status, m.status),
        delivery_mode="live",
        sandbox_result=None,
        scheduled_at=None,
        from_email=m.mail_from,
        from_name=m.names.from_name,
        subject=m.subject,
        to=[Recipient(email=m.rcpt_to, name=m.names.rcpt_name, sandbox_result=None)],
        cc=None,
        bcc=None,
        reply_to=list(m.names.reply_to) or None,
        tag=m.tag,
        tags=[],
        status_changed_at=iso_timestamp(m.finished_at or m.created_at),
        created_at=iso_timestamp(m.created_at),
    )


def message_data(m: MessageInfo) -> MessageData:
    """The SDK's MessageData of one recipient's copy."""
    return MessageData(
        **message_list_item(m).model_dump(),
        attachments=None,
        metadata=dict(m.metadata),
        route_id=m.route_id,
        track_clicks=m.track_clicks,
        attempts=m.attempts,
        last_error=m.last_error,
    )


def _list_filter(request: web.Request) -> MessageListFilter | None:
    """The list's filter, or None when it can match nothing clickrelay keeps."""
    for name in UNSUPPORTED_FILTERS:
        if request.query.get(name):
            raise BadInput(name, f"{name}: not supported by clickrelay")
    if request.query.get("filter[type]", "outbound") != "outbound" or request.query.get(
            "filter[delivery_mode]", "live") != "live":
        return None
    status = request.query.get("filter[status]") or None
    if status is not None and status not in MESSAGE_STATUS.values():
        return None  # a status clickrelay's copies never have
    sorts = query_list(request, "sort") or ["-created_at"]
    if sorts[0].lstrip("-") not in MESSAGE_SORTS:
        raise BadInput("sort", f"sort: one of {', '.join(MESSAGE_SORTS)} (- for descending)")
    query = request.query
    return MessageListFilter(
        search=query.get("filter[search]") or None,
        from_email=query.get("filter[from_email]") or None,
        subject=query.get("filter[subject]") or None,
        tag=query.get("filter[tag]") or None,
        project_id=query.get("filter[project]") or None,
        route_id=query.get("filter[route_id]") or None,
        status=next((k for k, v in MESSAGE_STATUS.items() if v == status), None),
        since=query_day_start(request, "filter[from_date]"),
        until=query_day_start(request, "filter[to_date]", 1),
        sort=sorts[0],
    )


def _lifecycle(m: MessageInfo, attempts: Sequence[DeliveryAttempt]
               ) -> list[tuple[int, MessageEventData]]:
    events = [(m.created_at, _event(m, "queued", m.created_at, None))]
    for a in attempts:
        details = {"attempt": a.attempt, "code": a.code, "detail": a.detail,
                   "duration_ms": a.duration_ms}
        name = event_of(a.outcome, a.code).removeprefix("message.")
        events.append((a.at, _event(m, name, a.at, details)))
    if m.status == "failed" and m.finished_at and not any(a.outcome == PERMANENT
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
