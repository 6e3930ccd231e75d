"""Routes through the API (docs/api.md): read them, and switch click (and open) tracking on
or off. ``PUT /v1/routes/{id}`` takes the SDK's ``{"settings": {...}}``, ``PATCH`` the
click tracking document's ``{"track_clicks": ...}``. A change is written back into the
configuration file (``relay.config.writeback``) and put in force at once; the file stays the one
source of truth, so an administrator's edit + SIGHUP keeps working alongside."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from relay.api.common import (
    Api,
    ItemStamps,
    api_of,
    cursor_page,
    item_stamps,
    json_response,
    page_request,
    query_bool,
    query_list,
    read_json,
    require_team,
)
from relay.api.model import read
from relay.api.shapes import (
    PatchRouteData,
    RouteData,
    RouteListData,
    RouteMutationResponse,
    RouteStatisticData,
    RouteTracking,
    UpdateRouteData,
)
from relay.api.stats import route_statistics
from relay.config.live import file_stamp
from relay.config.writeback import write_route_settings
from relay.errors import BadInput, Conflict, NotFound
from tracker.config import ProjectConfig, RouteConfig

log = logging.getLogger("clickrelay.api")

# Routes are named by their slug; their order in the file is the order they were made in.
ROUTE_SORTS = ("name", "slug", "created_at")


async def get_route(request: web.Request) -> web.Response:
    require_team(request)
    api = api_of(request)
    project, route = _find(api, request.match_info["route_id"])
    statistics = None
    if "statistics" in query_list(request, "include"):
        statistics = await route_statistics(
            api.store, api.live(), project.id, route.id,
            bool(query_bool(request, "include_machine")),
        )
    return json_response(route_data(project, route, await item_stamps(api), statistics))


async def put_route(request: web.Request) -> web.Response:
    require_team(request)
    body = read(UpdateRouteData.model_validate, await read_json(request, empty={}))
    settings = body.settings
    return await _update(request, _tracking_changes(settings.track_clicks if settings else None,
                                                    settings.track_opens if settings else None))


async def patch_route(request: web.Request) -> web.Response:
    require_team(request)
    body = read(PatchRouteData.model_validate, await read_json(request, empty={}))
    return await _update(request, _tracking_changes(body.track_clicks, body.track_opens))


async def list_routes(request: web.Request) -> web.Response:
    require_team(request)
    api = api_of(request)
    project = api.live().project_by_id(request.match_info["project_id"])
    if project is None:
        raise NotFound(f"No project {request.match_info['project_id']!r}.")
    routes = _filtered(request, list(project.routes))
    page = page_request(request)
    chunk = routes[page.offset : page.offset + page.size]
    stamps = await item_stamps(api)
    items = [_route_list_item(project, r, stamps) for r in chunk]
    return json_response(cursor_page(request, page, items, page.offset + page.size < len(routes)))


def _tracking_changes(track_clicks: bool | None, track_opens: bool | None) -> dict[str, bool]:
    given = {"track_clicks": track_clicks, "track_opens": track_opens}
    return {key: value for key, value in given.items() if value is not None}


async def _update(request: web.Request, changes: dict[str, bool]) -> web.Response:
    api = api_of(request)
    route_id = request.match_info["route_id"]
    field_prefix = "settings." if request.method == "PUT" else ""
    project, route = await update_route_tracking(api, route_id, changes, field_prefix)
    return json_response(RouteMutationResponse(
        data=route_data(project, route, await item_stamps(api)), message="Route updated."))


async def update_route_tracking(
    api: Api, route_id: str, changes: dict[str, bool], field_prefix: str = "",
    *, loaded: tuple[int, int, int] | None = None,
) -> tuple[ProjectConfig, RouteConfig]:
    """Set a route's tracking switches: checked, written back into the configuration file
    and put in force at once; the route as it now is. The API's PUT and PATCH and the
    dashboard's Save all come here. ``loaded``: the file's stamp when the caller read the
    route (the dashboard's page); a file changed on disk since is refused, not overwritten."""
    _, route = _find(api, route_id)
    for key in ("track_clicks", "track_opens"):
        if route.type == "inbound" and changes.get(key):
            where = f"{field_prefix}{key}"
            raise BadInput(where, f"{where}: an inbound route never tracks {key[6:]}")
    if changes:
        async with api.config_write_lock:
            if loaded is not None and file_stamp(api.live.path) != loaded:
                raise Conflict(f"The configuration file {api.live.path.name} changed on disk "
                               "since the page was loaded; nothing was saved. Reload the "
                               "page to see it as it is now.")
            config = await asyncio.to_thread(write_route_settings, api.live.path, route_id,
                                             changes)
            api.live.replace(config)
            if api.route_changed is not None:
                await api.route_changed(route_id, changes)
        log.info("route updated route=%s changes=%s", route_id, changes)
    return _find(api, route_id)


def _find(api: Api, route_id: str) -> tuple[ProjectConfig, RouteConfig]:
    found = api.live().find_route(route_id)
    if found is None:
        raise NotFound(f"No route {route_id!r}.")
    return found


def route_data(project: ProjectConfig, route: RouteConfig, stamps: ItemStamps,
               statistics: list[RouteStatisticData] | None = None) -> RouteData:
    return RouteData(
        **_route_list_item(project, route, stamps).model_dump(),
        project_id=project.id,
        settings=RouteTracking(track_clicks=route.track_clicks, track_opens=route.track_opens),
        statistics=statistics,
    )


def _route_list_item(project: ProjectConfig, route: RouteConfig, stamps: ItemStamps
                     ) -> RouteListData:
    created, updated = stamps.of("route", project.id, route.id)
    return RouteListData(
        id=route.id, slug=route.slug, name=route.slug, route_type=route.type,
        is_default=route.default, webhooks_count=len(project.webhooks),
        suppressed_recipients_count=0, created_at=created, updated_at=updated,
    )


def _filtered(request: web.Request, routes: list[RouteConfig]) -> list[RouteConfig]:
    position = {r.id: i for i, r in enumerate(routes)}
    route_type = request.query.get("filter[route_type]")
    if route_type:
        routes = [r for r in routes if r.type == route_type]
    is_default = query_bool(request, "filter[is_default]")
    if is_default is not None:
        routes = [r for r in routes if r.default == is_default]
    search = request.query.get("filter[search]", "").lower()
    if search:
        routes = [r for r in routes if search in r.slug.lower() or search in r.id.lower()]
    for sort in reversed(query_list(request, "sort")):
        key = sort.lstrip("-")
        if key not in ROUTE_SORTS:
            raise BadInput("sort", f"sort: one of {', '.join(ROUTE_SORTS)} (- for descending)")
        by_file = key == "created_at"
        routes = sorted(routes, key=lambda r: position[r.id] if by_file else r.slug,
                        reverse=sort.startswith("-"))
    return routes

