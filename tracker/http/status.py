"""The process's own pages, ``GET /healthz`` and ``GET /metrics``, and the typed app keys
they read; ``relay.app.make_app`` mounts them beside the clicks and the API."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tracker.http.health import QueueHealth
from tracker.http.redirect import REDIRECTOR_KEY
from tracker.metrics import Metrics
from tracker.supervisor import Supervisor

log = logging.getLogger("clickrelay.http")


class HealthStore(Protocol):
    async def ping(self) -> None: ...


STORE_KEY = web.AppKey("store", HealthStore)
METRICS_KEY = web.AppKey("metrics", Metrics)
# What /healthz reports besides the store: stuck queues and dead background tasks.
QUEUE_HEALTH_KEY = web.AppKey("queue_health", QueueHealth)
SUPERVISOR_KEY = web.AppKey("supervisor", Supervisor)


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
