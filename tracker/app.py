"""The HTTP application: a factory building the aiohttp app with its typed keys. The
tracker's routes live here; the relay adds the API routes to the same app."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tracker.config import ConfigSource
from tracker.health import QueueHealth
from tracker.metrics import Metrics
from tracker.redirect import REDIRECTOR_KEY, Recorder, Redirector, add_redirect_routes
from tracker.supervisor import Supervisor

log = logging.getLogger("clickrelay.http")


class HealthStore(Protocol):
    async def ping(self) -> None: ...


CONFIG_KEY: web.AppKey[ConfigSource] = web.AppKey("config")
STORE_KEY = web.AppKey("store", HealthStore)
METRICS_KEY = web.AppKey("metrics", Metrics)
# Set by whoever runs the queue workers: /healthz then also reports stuck queues.
QUEUE_HEALTH_KEY = web.AppKey("queue_health", QueueHealth)
# Set by whoever runs the background tasks: /healthz then also reports dead ones.
SUPERVISOR_KEY = web.AppKey("supervisor", Supervisor)

MAX_REQUEST_BODY = 30 * 1024 * 1024  # a 25 MB send request, base64 attachments included


def make_app(
    config: ConfigSource, store: HealthStore, metrics: Metrics, recorder: Recorder | None = None
) -> web.Application:
    """The app; with a ``recorder`` it also serves the tracking links (``/c/{token}``)."""
    app = web.Application(client_max_size=MAX_REQUEST_BODY)
    app[CONFIG_KEY] = config
    app[STORE_KEY] = store
    app[METRICS_KEY] = metrics
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    if recorder is not None:
        add_redirect_routes(app, Redirector(config, recorder, metrics))
    return app


async def healthz(request: web.Request) -> web.Response:
    queues, supervisor = request.app.get(QUEUE_HEALTH_KEY), request.app.get(SUPERVISOR_KEY)
    try:
        await request.app[STORE_KEY].ping()
        report = await queues.report() if queues is not None else None
    except Exception as exc:
        log.warning("health check: store unreachable: %s", exc)
        return web.json_response({"status": "error", "store": "unreachable"}, status=503)
    redirector = request.app.get(REDIRECTOR_KEY)
    failing = redirector.recorder.failing if redirector is not None else None
    if report is None and supervisor is None and failing is None:
        return web.json_response({"status": "ok"})
    body: dict[str, Any] = {"store": "reachable", **(report.body if report else {})}
    reasons = [body.pop("reason")] if "reason" in body else []
    if failing is not None:
        body["observations"] = "failing"
        reasons.append(f"clicks are not being stored: {failing}")
    if supervisor is not None:
        tasks = supervisor.report()
        body["tasks"] = tasks.tasks
        reasons += [tasks.reason] if tasks.reason else []
    if reasons:
        log.warning("health check: %s", "; ".join(reasons))
        return web.json_response({"status": "error", **body, "reason": "; ".join(reasons)},
                                 status=503)
    return web.json_response({"status": "ok", **body})


async def metrics_view(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
