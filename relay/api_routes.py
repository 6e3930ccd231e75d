"""Routes through the API (DESIGN §8): read them, and switch click (and open) tracking on
or off. ``PUT /v1/routes/{id}`` takes the SDK's ``{"settings": {...}}``, ``PATCH`` the
click tracking document's ``{"track_clicks": ...}``. A change is written back into the
configuration file (``relay.tomlwrite``) and put in force at once; the file stays the one
source of truth, so an administrator's edit + SIGHUP keeps working alongside."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from relay.api_common import (
    Api,
    api_of,
    config_file_time,
    cursor_page,
    json_response,
    page_request,
    query_bool,
    query_list,
    read_json,
    require_team,
)
from relay.api_fields import Fields
from relay.api_stats import route_statistics
from relay.errors import BadInput, NotFound
from relay.tomlwrite import write_route_settings
from tracker.config import ProjectConfig, RouteConfig

log = logging.getLogger("clickrelay.api")

TRACKING_KEYS = ("track_clicks", "track_opens")
# Keys of the SDK's UpdateRouteData / UpdateRouteSettingsData that clickrelay has no
# counterpart for: refused when given a value, so that nothing is silently dropped.
PUT_FIELDS = frozenset({"name", "settings", "inbound_settings", "inbound_domain",
                        "inbound_spam_threshold", "attachment_delivery"})
SETTINGS_FIELDS = frozenset({*TRACKING_KEYS, "generate_plaintext_fallback",
                             "suppress_auto_responders", "suppress_disposable_recipients", "tls",
                             "disable_hosted_unsubscribe", "redact_email_content"})
# Routes are named by their slug; their order in the file is the order they were made in.
ROUTE_SORTS = ("name", "slug", "created_at")


def add_route_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/routes/{route_id}", get_route)
    router.add_put("/v1/routes/{route_id}", put_route)
    router.add_patch("/v1/routes/{route_id}", patch_route)
    router.add_get("/v1/projects/{project_id}/routes", list_routes)


async def get_route(request: web.Request) -> web.Response:
    require_team(request)
    api = api_of(request)
    project, route = _find(api, request.match_info["route_id"])
    data = route_data(api, project, route)
    if "statistics" in query_list(request, "include"):
        data["statistics"] = await route_statistics(
            api.store, api.live(), project.id, route.id,
            bool(query_bool(request, "include_machine")),
        )
    return json_response(data)


async def put_route(request: web.Request) -> web.Response:
    require_team(request)
    body = Fields(await read_json(request, empty={}))
    body.only(PUT_FIELDS)
    for name in sorted(PUT_FIELDS - {"settings"}):
        if body.raw(name) is not None:
            raise body.error(name, "not supported: clickrelay routes keep only their tracking "
                             "settings in the API; edit the configuration file for the rest")
    settings = Fields(body.optional_object("settings") or {}, "settings")
    settings.only(SETTINGS_FIELDS)
    for name in sorted(SETTINGS_FIELDS - set(TRACKING_KEYS)):
        if settings.raw(name) is not None:
            raise settings.error(name, "not supported: clickrelay routes have only "
                                 "track_clicks and track_opens")
    return await _update(request, _tracking_changes(settings))


async def patch_route(request: web.Request) -> web.Response:
    require_team(request)
    body = Fields(await read_json(request, empty={}))
    body.only(frozenset(TRACKING_KEYS), hint="PATCH takes track_clicks and track_opens")
    return await _update(request, _tracking_changes(body))


async def list_routes(request: web.Request) -> web.Response:
    require_team(request)
    api = api_of(request)
    project = api.live().project_by_id(request.match_info["project_id"])
    if project is None:
        raise NotFound(f"No project {request.match_info['project_id']!r}.")
    routes = _filtered(request, list(project.routes))
    page = page_request(request)
    chunk = routes[page.offset : page.offset + page.size]
    items = [_route_list_item(api, project, r) for r in chunk]
    return json_response(cursor_page(request, page, items, page.offset + page.size < len(routes)))


def _tracking_changes(f: Fields) -> dict[str, bool]:
    changes = {}
    for key in TRACKING_KEYS:
        value = f.optional_bool(key)
        if value is not None:
            changes[key] = value
    return changes


async def _update(request: web.Request, changes: dict[str, bool]) -> web.Response:
    api = api_of(request)
    route_id = request.match_info["route_id"]
    project, route = _find(api, route_id)
    if route.type == "inbound" and changes.get("track_clicks"):
        where = "settings.track_clicks" if request.method == "PUT" else "track_clicks"
        raise BadInput(where, f"{where}: an inbound route never tracks clicks")
    if changes:
        async with api.config_write_lock:
            config = await asyncio.to_thread(write_route_settings, api.live.path, route_id,
                                             changes)
            api.live.replace(config)
        log.info("route updated through the api route=%s changes=%s", route_id, changes)
        project, route = _find(api, route_id)
    return json_response({"data": route_data(api, project, route), "message": "Route updated."})


def _find(api: Api, route_id: str) -> tuple[ProjectConfig, RouteConfig]:
    found = api.live().find_route(route_id)
    if found is None:
        raise NotFound(f"No route {route_id!r}.")
    return found


def route_data(api: Api, project: ProjectConfig, route: RouteConfig) -> dict[str, Any]:
    """The SDK's RouteData. Routes live in the configuration file: its time stands for
    both their creation and their last change."""
    stamp = config_file_time(api)
    return {
        "id": route.id,
        "project_id": project.id,
        "slug": route.slug,
        "name": route.slug,
        "route_type": route.type,
        "is_default": route.default,
        "settings": {"track_clicks": route.track_clicks, "track_opens": route.track_opens},
        "webhooks_count": len(project.webhooks),
        "suppressed_recipients_count": 0,
        "created_at": stamp,
        "updated_at": stamp,
    }


def _route_list_item(api: Api, project: ProjectConfig, route: RouteConfig) -> dict[str, Any]:
    data = route_data(api, project, route)
    keys = ("id", "slug", "name", "route_type", "is_default", "webhooks_count",
            "suppressed_recipients_count", "created_at", "updated_at")
    return {k: data[k] for k in keys}


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

