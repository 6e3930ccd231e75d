"""The HTTP application: a factory building the aiohttp app with its typed keys. The
tracker's routes live here; the relay adds the API routes to the same app."""

from __future__ import annotations

import logging
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tracker.config import ConfigSource
from tracker.metrics import Metrics

log = logging.getLogger("clickrelay.http")


class HealthStore(Protocol):
    async def ping(self) -> None: ...


CONFIG_KEY: web.AppKey[ConfigSource] = web.AppKey("config")
STORE_KEY = web.AppKey("store", HealthStore)
METRICS_KEY = web.AppKey("metrics", Metrics)

MAX_REQUEST_BODY = 30 * 1024 * 1024  # a 25 MB send request, base64 attachments included


def make_app(config: ConfigSource, store: HealthStore, metrics: Metrics) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BODY)
    app[CONFIG_KEY] = config
    app[STORE_KEY] = store
    app[METRICS_KEY] = metrics
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    return app


async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[STORE_KEY].ping()
    except Exception as exc:
        log.warning("health check: store unreachable: %s", exc)
        return web.json_response({"status": "error", "store": "unreachable"}, status=503)
    return web.json_response({"status": "ok"})


async def metrics_view(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
