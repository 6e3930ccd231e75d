"""The HTTP API under ``/v1`` (DESIGN §8), mounted on the tracker's aiohttp app: the
Lettermint send API (``relay.api_send``), routes with write-back (``relay.api_routes``),
messages, events and stats (``relay.api_reports``, ``relay.api_stats``), webhooks
(``relay.api_webhooks``), ``GET /v1/ping`` and ``GET /v1/openapi.json``.

Paths, credentials, bodies and error bodies are those of Lettermint's API, so that the
official SDKs work with only their base URL changed. Every failure under ``/v1`` becomes
a JSON error body (``relay.errors.http_error``); the tracker's own pages are untouched."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from relay.api_common import (
    API_KEY,
    SENDING_TOKEN_HEADER,
    Api,
    bearer_token,
    json_response,
    require_team,
    sending_project,
)
from relay.api_reports import add_report_routes
from relay.api_routes import add_route_routes
from relay.api_send import add_send_routes
from relay.api_store import ApiStore
from relay.api_webhooks import add_webhook_routes
from relay.errors import ApiRefusal, BadInput, TooManyAttempts, http_error
from relay.live import LiveConfig
from relay.openapi import openapi_document
from relay.submission import Submitter
from relay.throttle import Throttle

log = logging.getLogger("clickrelay.api")

API_PREFIX = "/v1/"
# aiohttp's own answers (unknown path, wrong method, body too large) as API error codes.
_HTTP_CODES = {400: "MALFORMED_REQUEST", 404: "RESOURCE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
               413: "PAYLOAD_TOO_LARGE"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_api_routes(
    app: web.Application,
    live: LiveConfig,
    store: ApiStore,
    submitter: Submitter,
    wake_webhooks: Callable[[], None] = lambda: None,
    throttle: Throttle | None = None,
) -> None:
    """Mount the API on ``app`` (before it starts). ``store`` offers what the views call
    (``SqliteStore`` does); ``throttle`` slows down wrong tokens
    (shared with SMTP AUTH; else the API's own)."""
    app[API_KEY] = Api(live, store, submitter, wake_webhooks,
                       throttle=throttle if throttle is not None else Throttle())
    app.middlewares.append(api_errors)
    app.router.add_get("/v1/ping", ping)
    app.router.add_get("/v1/openapi.json", openapi)
    add_send_routes(app.router)
    add_route_routes(app.router)
    add_report_routes(app.router)
    add_webhook_routes(app.router)


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Failures under /v1 as the JSON error bodies the SDKs parse; never an HTML page."""
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "HTTP_ERROR")
        return json_response({"error": code, "message": exc.reason}, exc.status)
    except (BadInput, ApiRefusal) as exc:
        status, body = http_error(exc)
        return json_response(body, status, _refusal_headers(exc, status))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("api request failed method=%s path=%s", request.method, request.path)
        status, body = http_error(exc)
        return json_response(body, status)


def _refusal_headers(exc: BadInput | ApiRefusal, status: int) -> dict[str, str] | None:
    if isinstance(exc, TooManyAttempts):  # RFC 6585 §4
        return {"Retry-After": str(exc.retry_after)}
    return {"WWW-Authenticate": 'Bearer realm="clickrelay"'} if status == 401 else None


async def ping(request: web.Request) -> web.Response:
    """``pong`` for a valid team token (Bearer) or project token (x-lettermint-token)."""
    if bearer_token(request) is not None or SENDING_TOKEN_HEADER not in request.headers:
        require_team(request)
    else:
        sending_project(request)
    return web.Response(text="pong", content_type="text/plain")


async def openapi(request: web.Request) -> web.Response:
    """What this server serves under /v1, as OpenAPI 3.1 (public: no secrets in it)."""
    base = f"{request.scheme}://{request.host}/v1"
    return json_response(openapi_document(base))
