"""A project's click activity for a period, as a chart and a table (docs/dashboard.md):
human clicks and unique human clicks (messages clicked by a person), and the opens people
made (docs/opens.md), per hour or day; with
**Include machine activity** (off by default, as in the reporting API), machine clicks by
classification stacked beside them. Narrowed to one route or one tag; with "Refresh every
30 s" the page reloads itself (a meta refresh: no script)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from aiohttp import web

from relay.dashboard.auth import signed_in
from relay.dashboard.mail import LIVE_PARAM, MACHINE_PARAM, MAX_SEARCH
from relay.dashboard.pages import Dashboard, dashboard_of, error_page, render
from relay.dashboard.projects import project_or_404
from store.clock import now_us
from store.records import ActivityBucket

HOUR_US = 3600 * 1_000_000
DAY_US = 24 * HOUR_US
# A period that ended this long ago, with no click before its end still waiting for
# promotion, can no longer change: its counts are kept (store/dashboard.py). Longer than a
# click's wait for its commit ([tracking] store_deadline_ms).
SETTLED_AFTER_US = 5 * 60 * 1_000_000


@dataclass(frozen=True)
class Period:
    label: str
    length_us: int
    bucket_us: int


PERIODS: Final[Mapping[str, Period]] = MappingProxyType({
    "24h": Period("Last 24 hours, per hour", DAY_US, HOUR_US),
    "7d": Period("Last 7 days, per day", 7 * DAY_US, DAY_US),
    "30d": Period("Last 30 days, per day", 30 * DAY_US, DAY_US),
    "90d": Period("Last 90 days, per day", 90 * DAY_US, DAY_US),
})
DEFAULT_PERIOD = "7d"
LONGEST_PERIOD = "90d"  # the days kept ahead of a view cover every period's
WARM_INTERVAL_SECONDS = 600.0
# Machine classifications, in the order they are stacked (docs/classification.md).
MACHINE_CLASSES = ("security_scanner", "link_preview", "generic_bot", "privacy_proxy")


@signed_in
async def activity(request: web.Request) -> web.StreamResponse:
    project = project_or_404(request)
    if isinstance(project, web.Response):
        return project
    period_name = request.query.get("period") or DEFAULT_PERIOD
    route_id = request.query.get("route") or None
    tag = (request.query.get("tag") or "").strip() or None
    include_machine = request.query.get(MACHINE_PARAM) in ("1", "on")
    problem = None
    if period_name not in PERIODS:
        problem = f"Period: one of {', '.join(PERIODS)}."
    elif route_id is not None and project.route_by_id(route_id) is None:
        problem = f"Route: {route_id[:100]!r} is not a route of {project.id}."
    elif tag is not None and len(tag) > MAX_SEARCH:
        problem = f"Tag: at most {MAX_SEARCH} characters."
    if problem:
        return error_page(request, 400, "Bad activity filter", problem)
    period = PERIODS[period_name]
    now = now_us()
    buckets, since, until = await _activity(dashboard_of(request), project.id, period, now,
                                            route_id, tag)
    rows = _rows(buckets, since, until, period.bucket_us)
    return render(request, "activity.html", {
        "project": project, "periods": PERIODS, "period": period_name, "route_id": route_id,
        "tag": tag or "", "include_machine": include_machine, "rows": rows,
        "live": request.query.get(LIVE_PARAM) == "1",
        "machine_classes": MACHINE_CLASSES, "chart": _chart(rows, include_machine),
        "totals": {"human": sum(r.human for r in rows),
                   "unique_human": sum(r.unique_human for r in rows),
                   "machine": sum(sum(r.machine.values()) for r in rows),
                   "human_opens": sum(r.human_opens for r in rows)},
    })


async def _activity(
    dashboard: Dashboard, project_id: str, period: Period, now: int,
    route_id: str | None = None, tag: str | None = None,
) -> tuple[list[ActivityBucket], int, int]:
    """The project's buckets over ``period`` up to now, and the range's start and end."""
    until = -(-now // period.bucket_us) * period.bucket_us  # the current period's end
    since = until - period.length_us
    pending = await dashboard.store.earliest_pending_click()
    buckets = await dashboard.store.click_activity(
        project_id, since, until, period.bucket_us, route_id=route_id, tag=tag,
        settled_before=min(now - SETTLED_AFTER_US, pending if pending is not None else now),
        kept_since=now - int(dashboard.config().retention.days * DAY_US))
    return buckets, since, until


async def keep_activity(dashboard: Dashboard, *, interval: float = WARM_INTERVAL_SECONDS
                        ) -> None:
    """The supervised task ``dashboard-activity``: counts each project's settled days once
    and keeps them (store/dashboard.py), every ``interval``, so that the first view of a
    long chart reads kept days instead of counting every click of them. A chart narrowed
    to a route or a tag is counted and kept when it is first asked for."""
    while True:
        for project in dashboard.config().projects:
            await _activity(dashboard, project.id, PERIODS[LONGEST_PERIOD], now_us())
        await asyncio.sleep(interval)


def _rows(buckets: list[ActivityBucket], since: int, until: int, step: int
          ) -> list[ActivityBucket]:
    """Every period of the range, empty ones included."""
    found = {b.start: b for b in buckets}
    return [found.get(start, ActivityBucket(start, 0, 0, {}))
            for start in range(since, until, step)]


def _chart(rows: list[ActivityBucket], include_machine: bool) -> dict[str, Any]:
    """The chart's data for static/dashboard.js: times in seconds, one list per series;
    machine series are stacked (each the sum of those before it and itself)."""
    series = [{"label": "Human clicks", "values": [r.human for r in rows], "kind": "human"},
              {"label": "Unique human clicks", "values": [r.unique_human for r in rows],
               "kind": "unique"},
              {"label": "Human opens", "values": [r.human_opens for r in rows],
               "kind": "opens"}]
    if include_machine:
        running = [0] * len(rows)
        for name in MACHINE_CLASSES:
            running = [total + r.machine.get(name, 0) for total, r in zip(running, rows,
                                                                           strict=True)]
            series.append({"label": f"Machine: {name}", "values": running, "kind": name})
    return {"x": [r.start // 1_000_000 for r in rows], "series": series}
