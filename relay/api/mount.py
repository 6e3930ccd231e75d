"""The HTTP API under ``/v1`` (docs/api.md), mounted by ``relay.app.make_app`` beside the
clicks: the Lettermint send API (``relay.api.send``), routes with write-back
(``relay.api.routes``), messages, events and stats (``relay.api.messages``,
``relay.api.stats``), webhooks (``relay.api.webhooks``); here, what every view under
``/v1`` shares (the error middleware), ``GET /v1/ping`` and ``GET /v1/openapi.json``.

Paths, credentials, bodies and error bodies are those of Lettermint's API, so that the
official SDKs work with only their base URL changed. Every failure under ``/v1`` becomes
a JSON error body (``relay.errors.http_error``); the tracker's own pages are untouched."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Final

from aiohttp import web

from relay.api.common import (
    SENDING_TOKEN_HEADER,
    bearer_token,
    json_response,
    require_team,
    sending_project,
)
from relay.api.openapi import openapi_document
from relay.errors import ApiRefusal, BadInput, KeyConflict, TooManyAttempts, http_error

log = logging.getLogger("clickrelay.api")

API_PREFIX = "/v1/"
# aiohttp's own answers (unknown path, wrong method, body too large) as API error codes.
_HTTP_CODES: Final[Mapping[int, str]] = MappingProxyType({
    400: "MALFORMED_REQUEST", 404: "RESOURCE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
    except (BadInput, ApiRefusal, KeyConflict) as exc:
        status, body = http_error(exc)
        return json_response(body, status, _refusal_headers(exc, status))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("api request failed method=%s path=%s", request.method, request.path)
        status, body = http_error(exc)
        return json_response(body, status)


def _refusal_headers(
    exc: BadInput | ApiRefusal | KeyConflict, status: int
) -> dict[str, str] | None:
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
