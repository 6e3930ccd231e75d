"""Projects → Routes → Route Settings, as the click tracking document walks through it
(docs/dashboard.md): the project list, a project's page, its routes with their type and
Track Clicks state, and a route's settings with the Track Clicks switch and **Save**.
Saving is ``PATCH /v1/routes/{id}``'s own code (``relay.api.routes.update_route_tracking``):
the same checks, the file written back with its comments, in force at once; a file changed
on disk since the page was loaded is reported, not overwritten."""

from __future__ import annotations

from aiohttp import web

from relay.api.routes import update_route_tracking
from relay.config.live import file_stamp
from relay.dashboard.auth import signed_in
from relay.dashboard.pages import dashboard_of, error_page, render
from relay.errors import ApiRefusal, BadInput
from tracker.config import ProjectConfig, RouteConfig

INBOUND_REASON = "An inbound route receives mail and never tracks clicks."


@signed_in
async def projects(request: web.Request) -> web.StreamResponse:
    return render(request, "projects.html", {"projects": dashboard_of(request).config().projects})


@signed_in
async def project(request: web.Request) -> web.StreamResponse:
    return _project_page(request, "project.html")


@signed_in
async def routes(request: web.Request) -> web.StreamResponse:
    return _project_page(request, "routes.html")


def _project_page(request: web.Request, template: str) -> web.Response:
    found = project_or_404(request)
    return found if isinstance(found, web.Response) else render(request, template,
                                                                 {"project": found})


@signed_in
async def route_settings(request: web.Request) -> web.StreamResponse:
    found = _route_or_404(request)
    if isinstance(found, web.Response):
        return found
    return _settings_page(request, *found, saved=False, problem=None, status=200)


@signed_in
async def save_route(request: web.Request) -> web.StreamResponse:
    found = _route_or_404(request)
    if isinstance(found, web.Response):
        return found
    project, route = found
    form = await request.post()
    loaded = _stamp(form.get("loaded"))
    if loaded is None:
        return error_page(request, 400, "Form refused", "The form lacks the file's state "
                          "when the page was loaded (field loaded). Reload the page.")
    changes = {"track_clicks": form.get("track_clicks") == "on"}
    if route.type == "inbound":
        changes = {}  # its switch is disabled: there is nothing to change
    try:
        project, route = await update_route_tracking(dashboard_of(request).api, route.id,
                                                     changes, loaded=loaded[0])
    except (BadInput, ApiRefusal) as exc:
        status = exc.status if isinstance(exc, ApiRefusal) else 422
        return _settings_page(request, project, route, saved=False, problem=exc.message,
                              status=status)
    return _settings_page(request, project, route, saved=True, problem=None, status=200)


def _settings_page(request: web.Request, project: ProjectConfig, route: RouteConfig, *,
                   saved: bool, problem: str | None, status: int) -> web.Response:
    stamp = file_stamp(dashboard_of(request).api.live.path)
    return render(request, "route.html", {
        "project": project, "route": route, "saved": saved, "problem": problem,
        "loaded": ":".join(map(str, stamp)) if stamp else "",
        "inbound_reason": INBOUND_REASON if route.type == "inbound" else None,
    }, status)


def _stamp(value: object) -> tuple[tuple[int, int, int] | None] | None:
    """The ``loaded`` field: ``mtime_ns:size:inode`` ('' for a file that was missing)."""
    if not isinstance(value, str):
        return None
    if value == "":
        return (None,)
    parts = value.split(":")
    if len(parts) != 3 or not all(p.isdigit() and len(p) < 30 for p in parts):
        return None
    return ((int(parts[0]), int(parts[1]), int(parts[2])),)


def project_or_404(request: web.Request) -> ProjectConfig | web.Response:
    project_id = request.match_info["project_id"]
    found = dashboard_of(request).config().project_by_id(project_id)
    if found is None:
        return error_page(request, 404, "Not found", f"There is no project {project_id!r}.")
    return found


def _route_or_404(request: web.Request) -> tuple[ProjectConfig, RouteConfig] | web.Response:
    route_id = request.match_info["route_id"]
    found = dashboard_of(request).config().find_route(route_id)
    if found is None:
        return error_page(request, 404, "Not found", f"There is no route {route_id!r}.")
    return found
