"""The HTTP application: one factory that builds the aiohttp app from its parts and
lists every route the process serves: the tracking links, the API under ``/v1``, and
the process's own ``/healthz`` and ``/metrics``. The views live with what they serve
(``tracker.http.redirect``, ``tracker.http.status``, ``relay.api``); what is mounted where is
decided here alone."""

from __future__ import annotations

from aiohttp import web

from relay.api import messages, routes, send, stats, webhooks
from relay.api.common import API_KEY, Api
from relay.api.mount import api_errors, openapi, ping
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
) -> web.Application:
    """The app, ready to be started; its parts are reached by their typed keys."""
    app = web.Application(client_max_size=MAX_REQUEST_BODY, middlewares=[api_errors])
    app[status.STORE_KEY] = store
    app[status.METRICS_KEY] = metrics
    app[status.QUEUE_HEALTH_KEY] = queue_health
    app[status.SUPERVISOR_KEY] = supervisor
    app[REDIRECTOR_KEY] = redirector
    app[API_KEY] = api
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
    router.add_get("/v1/messages/{message_id}", messages.get_message)
    router.add_get("/v1/messages/{message_id}/events", messages.message_events)
    router.add_get("/v1/messages/{message_id}/links", messages.message_links)
    router.add_get("/v1/stats", stats.stats)
    router.add_get("/v1/webhooks", webhooks.list_webhooks)
    router.add_get("/v1/webhooks/{webhook_id}", webhooks.get_webhook)
    router.add_post("/v1/webhooks/{webhook_id}/test", webhooks.test_webhook)
    router.add_get("/v1/webhooks/{webhook_id}/deliveries", webhooks.list_deliveries)
