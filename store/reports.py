"""Reads for the reporting API (docs/api.md): daily sending, click and open counts, a
message's click and open events and per-link counts, a webhook's deliveries with their last
attempt.

Days are UTC calendar days (``YYYY-MM-DD``). A human click is one that counts for metrics;
a machine click is one classified as machine (docs/classification.md). Open events have the
link index -1 (docs/opens.md)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Final

from store.backend import Database, Row
from store.dialect import containing, contains
from store.events import EVENT_COLUMNS, EventRecord
from store.mail import MESSAGE_LINKS
from store.message_info import INFO_COLUMNS, message_info
from store.records import MessageInfo, MessageListFilter


@dataclass(frozen=True)
class ReportFilter:
    """Which messages count: all, or one project's, one route's, one tag's."""

    project_id: str | None = None
    route_id: str | None = None
    tag: str | None = None


@dataclass(frozen=True)
class SendingCounts:
    day: str | None  # None for the total of the range
    route_id: str
    sent: int
    delivered: int
    failed: int
    open_tracked_delivered: int = 0  # delivered copies that carried the open pixel


@dataclass(frozen=True)
class ClickTotals:
    day: str | None  # None for the total of the range
    route_id: str | None  # None once the message data has been purged
    human: int
    machine: int
    unique_human: int  # messages with at least one human click
    unique_machine: int
    unique_any: int  # messages with a human or a machine click


@dataclass(frozen=True)
class OpenFirsts:
    """When one copy was first opened in each class (µs, None: not so far), counted once
    per recipient at that time (docs/opens.md, "Reports")."""

    route_id: str | None
    human_at: int | None  # a genuine open, or a click people made (an implied open)
    privacy_at: int | None  # a counted privacy-proxy open (Gmail's image proxy, …)
    machine_at: int | None  # a machine open (Apple's MPP, Gmail's prefetch, gateways)


@dataclass(frozen=True)
class DestinationCounts:
    destination: str
    human: int
    machine: int
    unique_human: int  # messages
    unique_machine: int


@dataclass(frozen=True)
class MessageLinkCounts:
    link_index: int
    destination: str
    anchor_text: str
    human: int
    machine: int
    first_clicked_at: int | None
    last_clicked_at: int | None


@dataclass(frozen=True)
class DeliveryRow:
    id: str
    webhook_id: str
    project_id: str
    event_type: str
    status: str  # pending | delivered | failed
    attempts: int
    next_attempt_at: int
    created_at: int
    finished_at: int | None
    last_error: str | None
    status_code: int | None  # of the last attempt
    duration_ms: int | None
    last_attempt_at: int | None


# The columns ``messages.list`` sorts by (the SDK's names), as the table has them.
MESSAGE_SORTS: Final[Mapping[str, str]] = MappingProxyType({
    "created_at": "created_at", "status_changed_at": "coalesce(finished_at, created_at)",
    "status": "status", "from_email": "mail_from", "subject": "subject",
})
# A delivery, its last attempt and its body (the SELECT of ``webhook_delivery``).
_DELIVERY_ROWS = (
    "SELECT d.id, d.webhook_id, d.project_id, d.event_type, d.status, d.attempts,"
    " d.next_attempt_at, d.created_at, d.finished_at, d.last_error, a.status_code,"
    " a.duration_ms, a.at, d.body FROM webhook_deliveries d LEFT JOIN webhook_attempts a"
    " ON a.id = (SELECT MAX(id) FROM webhook_attempts WHERE delivery_id = d.id)"
)


class ReportStore:
    db: Database

    async def sending_counts(
        self, since: int, until: int, where: ReportFilter, *, daily: bool
    ) -> list[SendingCounts]:
        """Copies accepted with ``since <= created_at < until``, per route (and day); the
        delivery status notifications the relay sent for them are not counted."""
        day = self.db.dialect.utc_day("created_at") if daily else "NULL"
        cond, params = _conditions(where, "project_id", "route_id", "tag")
        rows = await self.db.fetchall(
            f"SELECT {day}, route_id, COUNT(*), COUNT(*) FILTER (WHERE status = 'delivered'),"
            " COUNT(*) FILTER (WHERE status = 'failed'),"
            " COUNT(*) FILTER (WHERE status = 'delivered' AND track_opens = 1) FROM messages"
            f" WHERE created_at >= ? AND created_at < ? AND notice_of IS NULL{cond}"
            " GROUP BY 1, 2 ORDER BY 1, 2",
            [since, until, *params],
        )
        return [SendingCounts(*tuple(r)) for r in rows]

    async def click_totals(
        self, since: int, until: int, where: ReportFilter, *, daily: bool, opens: bool = False
    ) -> list[ClickTotals]:
        """Click events (open events, with ``opens``) with ``since <= clicked_at < until``,
        per route (and day)."""
        day = self.db.dialect.utc_day("e.clicked_at") if daily else "NULL"
        cond, params = _conditions(where, "e.project_id", "m.route_id", "m.tag")
        rows = await self.db.fetchall(
            f"SELECT {day}, m.route_id,"
            " COUNT(*) FILTER (WHERE e.counts_for_metrics = 1),"
            " COUNT(*) FILTER (WHERE e.machine = 1),"
            " COUNT(DISTINCT e.message_id) FILTER (WHERE e.counts_for_metrics = 1),"
            " COUNT(DISTINCT e.message_id) FILTER (WHERE e.machine = 1),"
            " COUNT(DISTINCT e.message_id)"
            " FILTER (WHERE e.counts_for_metrics = 1 OR e.machine = 1)"
            " FROM events e LEFT JOIN messages m ON m.id = e.message_id"
            f" WHERE e.clicked_at >= ? AND e.clicked_at < ?"
            f" AND {_OPENS if opens else _CLICKS}{cond} GROUP BY 1, 2 ORDER BY 1, 2",
            [since, until, *params],
        )
        return [ClickTotals(*tuple(r)) for r in rows]

    async def open_firsts(self, since: int, until: int, where: ReportFilter
                          ) -> list[OpenFirsts]:
        """The copies with the open pixel that were opened (or clicked by a person) with
        ``since <= at < until``, and when each was first opened in each class, whenever
        that was."""
        cond, params = _conditions(where, "e.project_id", "m.route_id", "m.tag")
        rows = await self.db.fetchall(
            "SELECT m.route_id,"
            f" MIN(e.clicked_at) FILTER (WHERE e.counts_for_metrics = 1 AND ({_CLICKS}"
            "  OR e.classification = 'genuine')),"
            f" MIN(e.clicked_at) FILTER (WHERE {_OPENS} AND e.counts_for_metrics = 1"
            "  AND e.classification != 'genuine'),"
            f" MIN(e.clicked_at) FILTER (WHERE {_OPENS} AND e.machine = 1)"
            " FROM events e LEFT JOIN messages m ON m.id = e.message_id"
            " WHERE e.message_id IN (SELECT message_id FROM events WHERE clicked_at >= ?"
            "  AND clicked_at < ? AND (link_index < 0 OR counts_for_metrics = 1))"
            # A click implies an open only of a copy that could be seen opening.
            f" AND COALESCE(m.track_opens, 1) = 1{cond} GROUP BY e.message_id, m.route_id",
            [since, until, *params],
        )
        return [OpenFirsts(*tuple(r)) for r in rows]

    async def destination_counts(
        self, since: int, until: int, where: ReportFilter, *, limit: int
    ) -> list[DestinationCounts]:
        """Clicks per destination URL, most human clicks first."""
        cond, params = _conditions(where, "e.project_id", "m.route_id", "m.tag")
        rows = await self.db.fetchall(
            "SELECT e.destination,"
            " COUNT(*) FILTER (WHERE e.counts_for_metrics = 1),"
            " COUNT(*) FILTER (WHERE e.machine = 1),"
            " COUNT(DISTINCT e.message_id) FILTER (WHERE e.counts_for_metrics = 1),"
            " COUNT(DISTINCT e.message_id) FILTER (WHERE e.machine = 1)"
            " FROM events e LEFT JOIN messages m ON m.id = e.message_id"
            f" WHERE e.clicked_at >= ? AND e.clicked_at < ? AND {_CLICKS}{cond}"
            " GROUP BY e.destination ORDER BY 2 DESC, 3 DESC, e.destination LIMIT ?",
            [since, until, *params, limit],
        )
        return [DestinationCounts(*tuple(r)) for r in rows]

    async def message_click_events(
        self, message_id: str, *, include_machine: bool, descending: bool, limit: int,
        include_opens: bool = False,
    ) -> list[tuple[EventRecord, str]]:
        """A message's click events (and open events, ``include_opens``) with their link's
        anchor text, in time order (or the reverse), machine ones only when asked."""
        order = "DESC" if descending else "ASC"
        machine = "" if include_machine else " AND e.machine = 0"
        machine += "" if include_opens else f" AND {_CLICKS}"
        columns = ", ".join(f"e.{c.strip()}" for c in EVENT_COLUMNS.split(","))
        rows = await self.db.fetchall(
            f"SELECT {columns}, COALESCE(l.anchor_text, '') FROM events e"
            f" LEFT JOIN ({MESSAGE_LINKS}) l ON l.link_index = e.link_index"
            f" WHERE e.message_id = ?1{machine}"
            f" ORDER BY e.clicked_at {order}, e.observation_id {order} LIMIT ?2",
            (message_id, limit),
        )
        return [(_event_record(r), r[-1]) for r in rows]

    async def message_link_counts(self, message_id: str) -> list[MessageLinkCounts]:
        """Every tracked link of a message with its human and machine clicks."""
        rows = await self.db.fetchall(
            "SELECT l.link_index, l.destination, l.anchor_text,"
            " COUNT(e.id) FILTER (WHERE e.counts_for_metrics = 1),"
            " COUNT(e.id) FILTER (WHERE e.machine = 1), MIN(e.clicked_at), MAX(e.clicked_at)"
            f" FROM ({MESSAGE_LINKS}) l LEFT JOIN events e"
            " ON e.message_id = l.message_id AND e.link_index = l.link_index"
            " WHERE l.honeypot = 0 GROUP BY l.link_index, l.destination, l.anchor_text"
            " ORDER BY l.link_index",
            (message_id,),
        )
        return [MessageLinkCounts(*tuple(r)) for r in rows]

    async def webhook_delivery_page(
        self, project_id: str, webhook_id: str, *, status: str | None, event_type: str | None,
        since: int | None, until: int | None, offset: int, limit: int,
    ) -> list[DeliveryRow]:
        """A webhook's deliveries, newest first, each with its last attempt."""
        sql = f"{_DELIVERY_ROWS} WHERE d.project_id = ? AND d.webhook_id = ?"
        params: list[object] = [project_id, webhook_id]
        for clause, value in ((" AND d.status = ?", status),
                              (" AND d.event_type = ?", event_type),
                              (" AND d.created_at >= ?", since),
                              (" AND d.created_at < ?", until)):
            if value is not None:
                sql += clause
                params.append(value)
        rows = await self.db.fetchall(
            sql + " ORDER BY d.created_at DESC, d.id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [DeliveryRow(*tuple(r)[:-1]) for r in rows]

    async def webhook_delivery(
        self, project_id: str, webhook_id: str, delivery_id: str
    ) -> tuple[DeliveryRow, str] | None:
        """One delivery of a webhook with its last attempt, and the body it sends."""
        row = await self.db.fetchone(
            f"{_DELIVERY_ROWS} WHERE d.project_id = ? AND d.webhook_id = ? AND d.id = ?",
            (project_id, webhook_id, delivery_id),
        )
        if row is None:
            return None
        values = tuple(row)
        return DeliveryRow(*values[:-1]), values[-1]

    async def list_messages(
        self, where: MessageListFilter, *, offset: int, limit: int
    ) -> list[MessageInfo]:
        """A page of copies, filtered and sorted as ``where`` says (docs/api.md)."""
        sql = f"SELECT {INFO_COLUMNS} FROM messages WHERE 1 = 1"
        params: list[object] = []
        if where.search:
            sql += (f" AND ({contains('mail_from')} OR {contains('rcpt_to')}"
                    f" OR {contains('subject')})")
            params += [containing(where.search)] * 3
        for column, part in (("mail_from", where.from_email), ("subject", where.subject)):
            if part:
                sql += f" AND {contains(column)}"
                params.append(containing(part))
        for condition, value in (("tag = ?", where.tag), ("project_id = ?", where.project_id),
                              ("route_id = ?", where.route_id), ("status = ?", where.status),
                              ("created_at >= ?", where.since), ("created_at < ?", where.until)):
            if value is not None:
                sql += f" AND {condition}"
                params.append(value)
        column = where.sort.lstrip("-")
        if column not in MESSAGE_SORTS:
            raise ValueError(f"not a column to sort messages by: {column!r}")
        order = "DESC" if where.sort.startswith("-") else "ASC"
        sql += f" ORDER BY {MESSAGE_SORTS[column]} {order}, id {order} LIMIT ? OFFSET ?"
        rows = await self.db.fetchall(sql, [*params, limit, offset])
        return [message_info(r) for r in rows]

    async def webhook_last_called(self, project_id: str, webhook_id: str) -> int | None:
        row = await self.db.fetchone(
            "SELECT MAX(a.at) FROM webhook_attempts a JOIN webhook_deliveries d"
            " ON d.id = a.delivery_id WHERE d.project_id = ? AND d.webhook_id = ?",
            (project_id, webhook_id),
        )
        return row[0] if row else None


def _conditions(where: ReportFilter, project: str, route: str, tag: str
                ) -> tuple[str, list[object]]:
    sql = ""
    params: list[object] = []
    for column, value in ((project, where.project_id), (route, where.route_id),
                          (tag, where.tag)):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    return sql, params


_CLICKS = "e.link_index >= 0"  # click events, not open events
_OPENS = "e.link_index < 0"
_FLAGS = ("machine", "counts_for_metrics", "first_click")
_LISTS = ("reason_codes", "rules")


def _event_record(row: Row) -> EventRecord:
    values = {f.name: row[f.name] for f in fields(EventRecord)}
    for name in _FLAGS:
        values[name] = bool(values[name])
    for name in _LISTS:
        values[name] = tuple(json.loads(values[name] or "[]"))
    return EventRecord(**values)
