"""``GET /v1/stats``: sending, click and open counts per UTC day, in the SDK's StatsData
shape (docs/api.md), and the same per route for ``RouteData.statistics``.

Clicks are the human ones (those that count for metrics) unless ``include_machine`` is
set: then ``clicked`` also counts machine clicks and ``machine_clicked`` splits them out.
``unique_clicked`` (messages clicked at least once) and ``links`` (per destination URL)
are clickrelay's additions to the shape. Opens are counted once per recipient, in the day
of the first open of each class, as the SDK documents (docs/opens.md, "Reports")."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from aiohttp import web

from relay.api.common import api_of, json_response, query_bool, require_team
from relay.api.shapes import (
    RouteStatisticData,
    StatsData,
    StatsDay,
    StatsInbound,
    StatsLink,
    StatsTotals,
    StatsTypeData,
)
from relay.api.store import StatsStore
from relay.config.load import Config
from relay.errors import BadInput, NotFound
from store.reports import (
    ClickTotals,
    DestinationCounts,
    OpenFirsts,
    ReportFilter,
    SendingCounts,
)

MAX_DAYS = 90
ROUTE_STATISTICS_DAYS = 30
MAX_LINKS = 100
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


async def stats(request: web.Request) -> web.Response:
    require_team(request)
    api = api_of(request)
    first, last = date_range(request)
    where = _filter(api.live(), request)
    include_machine = bool(query_bool(request, "include_machine"))
    store: StatsStore = api.store
    totals, daily = await daily_report(store, api.live(), where, first, last, include_machine)
    since, until = _bounds(first, last)
    links = await store.destination_counts(since, until, where, limit=MAX_LINKS)
    return json_response(StatsData(
        from_=first.isoformat(), to=last.isoformat(), totals=totals, daily=daily,
        links=[_link(d, include_machine) for d in links],
    ))


async def route_statistics(store: StatsStore, config: Config, project_id: str, route_id: str,
                           include_machine: bool) -> list[RouteStatisticData]:
    """The SDK's RouteStatisticData for the last 30 days."""
    last = datetime.now(UTC).date()
    first = last - timedelta(days=ROUTE_STATISTICS_DAYS - 1)
    where = ReportFilter(project_id=project_id, route_id=route_id)
    _, daily = await daily_report(store, config, where, first, last, include_machine)
    return [
        RouteStatisticData(
            date=day.date, sent_count=day.sent, delivered_count=day.delivered,
            opened_count=day.opened or 0, clicked_count=day.clicked,
            hard_bounce_count=day.hard_bounced, spam_complaint_count=0,
            inbound_received_count=0, observed_opened_count=day.observed_opened,
            human_opened_count=day.human_opened, privacy_opened_count=day.privacy_opened,
            effective_opened_count=day.effective_opened,
            machine_opened_count=day.machine_opened, machine_clicked_count=day.machine_clicked,
        )
        for day in daily
    ]


async def daily_report(store: StatsStore, config: Config, where: ReportFilter, first: date,
                       last: date, include_machine: bool) -> tuple[StatsTotals, list[StatsDay]]:
    """The totals of the days from ``first`` to ``last``, and each day."""
    since, until = _bounds(first, last)
    sending = await store.sending_counts(since, until, where, daily=True)
    clicks = await store.click_totals(since, until, where, daily=True)
    totals = await store.click_totals(since, until, where, daily=False)
    firsts = await store.open_firsts(since, until, where)
    opened = await store.click_totals(since, until, where, daily=True, opens=True)
    opened_total = await store.click_totals(since, until, where, daily=False, opens=True)
    types = {r.id: r.type for p in config.projects for r in p.routes}
    by_type = where.project_id is not None
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    daily = []
    for day in days:
        key = day.isoformat()
        start, end = _bounds(day, day)
        counts = _counts([s for s in sending if s.day == key],
                         [c for c in clicks if c.day == key], types, by_type, include_machine,
                         _opens(firsts, start, end, include_machine,
                                [o for o in opened if o.day == key]))
        daily.append(StatsDay(date=key, **counts.model_dump()))
    opens = _opens(firsts, since, until, include_machine, opened_total)
    return _counts(sending, totals, types, by_type, include_machine, opens), daily


def _opens(firsts: Sequence[OpenFirsts], start: int, end: int, include_machine: bool,
           events: Sequence[ClickTotals]) -> dict[str, int | None]:
    """Copies first opened in ``[start, end)``, per class: a privacy-proxy open is
    unresolved while no human open (or click) of the copy came before the end; and the
    open events of the range (``events``)."""
    def within(at: int | None) -> bool:
        return at is not None and start <= at < end

    human = sum(1 for f in firsts if within(f.human_at))
    privacy = sum(1 for f in firsts if within(f.privacy_at)
                  and (f.human_at is None or f.human_at >= end))
    machine = sum(1 for f in firsts if within(f.machine_at))
    return {"human": human, "privacy": privacy,
            "machine": machine if include_machine else None,
            "events": sum(e.human for e in events),
            "machine_events": sum(e.machine for e in events) if include_machine else None}


def _counts(sending: Sequence[SendingCounts], clicks: Sequence[ClickTotals],
            types: dict[str, str], by_type: bool, include_machine: bool,
            opens: dict[str, int | None]) -> StatsTotals:
    human, machine = sum(c.human for c in clicks), sum(c.machine for c in clicks)
    tracked = sum(s.open_tracked_delivered for s in sending)
    human_opened, privacy_opened = opens["human"] or 0, opens["privacy"] or 0
    # Null where opens were not tracked at all, as the SDK's shape has it.
    observed = human_opened + privacy_opened if tracked or human_opened or privacy_opened \
        else None
    return StatsTotals(
        sent=sum(s.sent for s in sending),
        delivered=sum(s.delivered for s in sending),
        hard_bounced=sum(s.failed for s in sending),
        spam_complaints=0,
        opened=observed,
        clicked=human + machine if include_machine else human,
        inbound=StatsInbound(received=0),
        transactional=_by_type(sending, types, "transactional") if by_type else None,
        broadcast=_by_type(sending, types, "broadcast") if by_type else None,
        observed_opened=observed,
        human_opened=None if observed is None else human_opened,
        privacy_opened=None if observed is None else privacy_opened,
        effective_opened=observed,
        machine_opened=opens["machine"],
        machine_clicked=machine if include_machine else None,
        unique_clicked=sum((c.unique_any if include_machine else c.unique_human)
                           for c in clicks),
        machine_unique_clicked=sum(c.unique_machine for c in clicks)
        if include_machine else None,
        open_tracked_delivered=tracked,
        human_open_rate=round(human_opened / tracked, 4) if tracked else None,
        opened_events=None if observed is None else opens["events"],
        machine_opened_events=opens["machine_events"],
    )


def _by_type(sending: Sequence[SendingCounts], types: dict[str, str], kind: str
             ) -> StatsTypeData:
    rows = [s for s in sending if types.get(s.route_id) == kind]
    return StatsTypeData(sent=sum(s.sent for s in rows),
                         hard_bounced=sum(s.failed for s in rows), spam_complaints=0)


def _link(d: DestinationCounts, include_machine: bool) -> StatsLink:
    return StatsLink(
        destination_url=d.destination,
        clicked=d.human + d.machine if include_machine else d.human,
        unique_clicked=d.unique_human,
        machine_clicked=d.machine if include_machine else None,
        machine_unique_clicked=d.unique_machine if include_machine else None,
    )


def date_range(request: web.Request) -> tuple[date, date]:
    """``from`` and ``to`` (``YYYY-MM-DD``, inclusive, at most 90 days apart)."""
    first, last = _date(request, "from"), _date(request, "to")
    if last < first:
        raise BadInput("to", "to: must not be before from")
    if (last - first).days >= MAX_DAYS:
        raise BadInput("to", f"to: the range spans at most {MAX_DAYS} days")
    if last >= date.max - timedelta(days=1):
        raise BadInput("to", "to: out of range")
    return first, last


def _date(request: web.Request, name: str) -> date:
    raw = request.query.get(name)
    if not raw:
        raise BadInput(name, f"{name}: is required (YYYY-MM-DD)")
    try:
        if not _DATE.fullmatch(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise BadInput(name, f"{name}: not a date in the form YYYY-MM-DD: {raw[:20]!r}") from exc


def _filter(config: Config, request: web.Request) -> ReportFilter:
    project_id = request.query.get("project_id") or None
    if project_id is not None and config.project_by_id(project_id) is None:
        raise NotFound(f"No project {project_id!r}.")
    route_id = request.query.get("route_id") or None
    if route_id is not None:
        found = config.find_route(route_id)
        if found is None or (project_id is not None and found[0].id != project_id):
            raise NotFound(f"No route {route_id!r}" + (f" in project {project_id!r}."
                                                       if project_id else "."))
    return ReportFilter(project_id, route_id, request.query.get("tag") or None)


def _bounds(first: date, last: date) -> tuple[int, int]:
    """[start of ``first``, start of the day after ``last``) in µs, UTC."""
    def us(d: date) -> int:
        return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) * 1_000_000

    return us(first), us(last + timedelta(days=1))
