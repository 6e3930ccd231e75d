"""The HTTP application: one factory that builds the aiohttp app from its parts and
lists every route the process serves: the tracking links, the API under ``/v1``, the
dashboard at ``/`` (docs/dashboard.md), and the process's own ``/healthz`` and
``/metrics``. The views live with what they serve (``tracker.http.redirect``,
``tracker.http.status``, ``relay.api``, ``relay.dashboard``); what is mounted where is
decided here alone."""

from __future__ import annotations

from aiohttp import web

from relay.api import message_content, messages, routes, send, stats, webhooks
from relay.api.common import API_KEY, Api
from relay.api.mount import api_errors, openapi, ping
from relay.dashboard import activity, auth, mail, operations, projects
from relay.dashboard.pages import DASHBOARD_KEY, STATIC_DIR, Dashboard, setup_templates
from tracker.http import status
from tracker.http.health import QueueHealth
from tracker.http.redirect import REDIRECTOR_KEY, Redirector
from tracker.metrics import Metrics
from tracker.supervisor import Supervisor

MAX_REQUEST_BODY = 30 * 1024 * 1024  # a 25 MB send request, base64 attachments included


def make_app(
    *,
    store: status.HealthStore,
    metrics: Metrics,
    redirector: Redirector,
    api: Api,
    queue_health: QueueHealth,
    supervisor: Supervisor,
    dashboard: Dashboard,
) -> web.Application:
    """The app, ready to be started; its parts are reached by their typed keys."""
    app = web.Application(client_max_size=MAX_REQUEST_BODY, middlewares=[api_errors])
    app[status.STORE_KEY] = store
    app[status.METRICS_KEY] = metrics
    app[status.QUEUE_HEALTH_KEY] = queue_health
    app[status.SUPERVISOR_KEY] = supervisor
    app[REDIRECTOR_KEY] = redirector
    app[API_KEY] = api
    app[DASHBOARD_KEY] = dashboard
    setup_templates(app)
    add_routes(app.router, redirector)
    return app


def add_routes(router: web.UrlDispatcher, redirector: Redirector) -> None:
    """Every route; ``add_get`` answers HEAD too."""
    # Any path under /c/ reaches the view, so that every refusal is the same 404 page.
    router.add_get("/c/{token:.*}", redirector.click)
    # And any path under /o/ to the pixel: an image whatever the token (docs/opens.md).
    router.add_get("/o/{token:.*}", redirector.open_pixel)
    router.add_get("/healthz", status.healthz)
    router.add_get("/metrics", status.metrics_view)
    router.add_get("/v1/ping", ping)
    router.add_get("/v1/openapi.json", openapi)
    router.add_post("/v1/send", send.send)
    router.add_post("/v1/send/batch", send.send_batch)
    router.add_get("/v1/routes/{route_id}", routes.get_route)
    router.add_put("/v1/routes/{route_id}", routes.put_route)
    router.add_patch("/v1/routes/{route_id}", routes.patch_route)
    router.add_get("/v1/projects/{project_id}/routes", routes.list_routes)
    router.add_get("/v1/messages", messages.list_messages)
    router.add_get("/v1/messages/{message_id}", messages.get_message)
    router.add_get("/v1/messages/{message_id}/source", message_content.message_source)
    router.add_get("/v1/messages/{message_id}/html", message_content.message_html)
    router.add_get("/v1/messages/{message_id}/text", message_content.message_text)
    router.add_get("/v1/messages/{message_id}/events", messages.message_events)
    router.add_get("/v1/messages/{message_id}/links", messages.message_links)
    router.add_get("/v1/stats", stats.stats)
    router.add_get("/v1/webhooks", webhooks.list_webhooks)
    router.add_get("/v1/webhooks/{webhook_id}", webhooks.get_webhook)
    router.add_post("/v1/webhooks/{webhook_id}/test", webhooks.test_webhook)
    router.add_get("/v1/webhooks/{webhook_id}/deliveries", webhooks.list_deliveries)
    router.add_get("/v1/webhooks/{webhook_id}/deliveries/{delivery_id}",
                   webhooks.get_delivery)
    add_dashboard_routes(router)


def add_dashboard_routes(router: web.UrlDispatcher) -> None:
    """The dashboard's pages; each one but the sign-in needs a session."""
    router.add_get("/", projects.projects)
    router.add_get("/login", auth.login_page)
    router.add_post("/login", auth.login)
    router.add_post("/logout", auth.logout)
    router.add_get("/projects/{project_id}", projects.project)
    router.add_get("/projects/{project_id}/routes", projects.routes)
    router.add_get("/routes/{route_id}", projects.route_settings)
    router.add_post("/routes/{route_id}", projects.save_route)
    router.add_get("/projects/{project_id}/activity", activity.activity)
    router.add_get("/projects/{project_id}/messages", mail.messages)
    router.add_get("/messages/{message_id}", mail.message)
    router.add_get("/projects/{project_id}/webhooks", operations.webhooks)
    router.add_post("/webhooks/{webhook_id}/test", operations.test_webhook)
    router.add_get("/spool", operations.spool)
    router.add_get("/spool/{message_id}/{action}", operations.confirm_spool_action)
    router.add_post("/spool/{message_id}/{action}", operations.spool_action)
    router.add_static("/static/", STATIC_DIR, append_version=False)
