"""The OpenAPI 3.1 description of what clickrelay serves under ``/v1``, served at
``GET /v1/openapi.json``. The schemas of the bodies are generated from the shapes that the
API validates requests with and builds its answers from (``relay.api.send_request``,
``relay.api.shapes``); this module lists the operations: paths, parameters, credentials,
and the shapes each one takes and gives."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from relay.api.send import BATCH, KEY
from relay.api.send_request import SendBatchMailItem, SendMailRequest
from relay.api.shapes import (
    CursorPage,
    Error,
    MessageData,
    MessageEventData,
    MessageLinks,
    MessageListData,
    PatchRouteData,
    PendingSendMailResponse,
    RouteData,
    RouteListData,
    RouteMutationResponse,
    StatsData,
    TestWebhookResponse,
    UpdateRouteData,
    WebhookData,
    WebhookDeliveryData,
    WebhookDeliveryListData,
    WebhookListData,
)

Schema = dict[str, Any]
# The parts shared by many operations are frozen (tuples for arrays), so that no document
# handed out can change them; ``plain`` turns the finished document into JSON's types.
Part = Mapping[str, Any]
Ref = Callable[[Any], Schema]

STR: Final[Part] = MappingProxyType({"type": "string"})
FLAG: Final[Part] = MappingProxyType({"type": "string", "enum": ("1", "0", "true", "false")})
TEAM: Final = (MappingProxyType({"teamToken": ()}),)
SENDING: Final = (MappingProxyType({"sendingToken": ()}),)
REF = "#/components/schemas/{model}"
REQUESTS: tuple[type[BaseModel], ...] = (SendMailRequest, SendBatchMailItem, UpdateRouteData,
                                         PatchRouteData)
RESPONSES: tuple[type[BaseModel], ...] = (
    Error, PendingSendMailResponse, RouteData, RouteMutationResponse, CursorPage[RouteListData],
    MessageData, CursorPage[MessageEventData], MessageLinks, StatsData,
    CursorPage[WebhookListData], WebhookData, TestWebhookResponse,
    CursorPage[WebhookDeliveryListData], CursorPage[MessageListData], WebhookDeliveryData,
)


class _Schemas(GenerateJsonSchema):
    """JSON Schema as the document shows it: no title repeated on every property."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def normalize_name(self, name: str) -> str:
        """A generic shape by what it holds: ``CursorPage[RouteListData]`` is named
        ``RouteListDataCursorPage``."""
        return super().normalize_name(re.sub(r"^(\w+)\[(\w+)\]$", r"\2\1", name))


def shapes() -> tuple[Ref, dict[str, Schema]]:
    """A reference to each shape, and the schemas they refer to (``components``)."""
    modes: list[tuple[type[BaseModel], Any]] = [(m, "validation") for m in REQUESTS]
    modes += [(m, "serialization") for m in RESPONSES]
    refs, top = models_json_schema(modes, ref_template=REF, schema_generator=_Schemas)
    by_shape = {shape: schema for (shape, _), schema in refs.items()}
    return by_shape.__getitem__, top.get("$defs", {})


def adapted(schema: Schema) -> Schema:
    """A TypeAdapter's schema whose shapes are among the components."""
    return {k: v for k, v in schema.items() if k != "$defs"}


def array(items: Part, **limits: int) -> Schema:
    return {"type": "array", "items": items, **limits}


def param(name: str, where: str, schema: Part, required: bool = False,
          example: Any = None) -> Part:
    out = {"name": name, "in": where, "schema": schema, "required": required or where == "path"}
    if example is not None:
        out["example"] = example
    return MappingProxyType(out)


def op(summary: str, security: Sequence[Part], ok: tuple[int, Part | None],
       errors: tuple[int, ...] = (401,), params: tuple[Part, ...] = (),
       body: Part | None = None, body_required: bool = True, example: Any = None,
       text_type: str = "text/plain") -> Schema:
    """An operation; an answer without a schema is text of ``text_type``."""
    status, schema = ok
    content = ({text_type: {"schema": STR}} if schema is None
               else {"application/json": {"schema": schema}})
    responses: dict[str, Any] = {str(status): {"description": "OK", "content": content}}
    # Where a token is checked, too many wrong ones from a network get 429 (unchecked).
    for code in (*errors, 429) if 401 in errors else errors:
        responses[str(code)] = {"$ref": f"#/components/responses/E{code}"}
    out: Schema = {"summary": summary, "security": security, "responses": responses,
                   "parameters": list(params)}
    if body is not None:
        media: dict[str, Any] = {"schema": body}
        if example is not None:
            media["example"] = example
        out["requestBody"] = {"required": body_required, "content": {"application/json": media}}
    return out


PAGE = (param("page[size]", "query", {"type": "integer", "minimum": 1, "maximum": 100}),
        param("page[cursor]", "query", STR))
CURSOR = (param("page[size]", "query", {"type": "integer", "minimum": 1, "maximum": 100}),
          param("cursor", "query", STR))
ROUTE_ID = param("route_id", "path", STR)
MESSAGE_ID = param("message_id", "path", STR)
WEBHOOK_ID = param("webhook_id", "path", STR)
IDEMPOTENCY = param("Idempotency-Key", "header", KEY.json_schema())
MESSAGE_FILTERS = ("search", "from_email", "subject", "tag", "project", "route_id", "status",
                   "type", "delivery_mode", "from_date", "to_date")

SEND_EXAMPLE: Final[Part] = MappingProxyType({
    "from": "Acme <hello@acme.example>", "to": ("jane@example.org",), "subject": "Your receipt",
    "html": '<p>Thanks! <a href="https://acme.example/orders/42">Your order</a></p>',
    "text": "Thanks! https://acme.example/orders/42", "tag": "receipts",
    "metadata": MappingProxyType({"order": "42"}),
    "settings": MappingProxyType({"track_clicks": True}),
})


def paths(ref: Ref) -> dict[str, Any]:
    stats_params = (param("from", "query", {"type": "string", "format": "date"}, True,
                          "2026-01-01"),
                    param("to", "query", {"type": "string", "format": "date"}, True,
                          "2026-01-31"),
                    param("project_id", "query", STR), param("route_id", "query", STR),
                    param("tag", "query", STR), param("include_machine", "query", FLAG))
    route_filters = (param("filter[route_type]", "query", STR),
                     param("filter[is_default]", "query", FLAG),
                     param("filter[search]", "query", STR), param("sort", "query", STR))
    return {
        "/ping": {"get": op("Check a team or sending token", [*TEAM, *SENDING], (200, None))},
        "/send": {"post": op("Send an email", SENDING, (202, ref(PendingSendMailResponse)),
                             (400, 401, 409, 422), (IDEMPOTENCY,), ref(SendMailRequest),
                             example=SEND_EXAMPLE)},
        "/send/batch": {"post": op(
            "Send up to 500 emails", SENDING, (202, array(ref(PendingSendMailResponse))),
            (400, 401, 409, 422), (IDEMPOTENCY,),
            adapted(BATCH.json_schema(ref_template=REF, schema_generator=_Schemas)),
            example=[SEND_EXAMPLE, {**SEND_EXAMPLE, "to": ("joe@example.org",)}])},
        "/routes/{route_id}": {
            "get": op("A route", TEAM, (200, ref(RouteData)), (401, 404, 422),
                      (ROUTE_ID, param("include", "query", STR),
                       param("include_machine", "query", FLAG))),
            "put": op("Change a route's tracking settings (written back to the file)", TEAM,
                      (200, ref(RouteMutationResponse)), (400, 401, 404, 409, 422),
                      (ROUTE_ID,), ref(UpdateRouteData), False,
                      {"settings": {"track_clicks": True}}),
            "patch": op("Change a route's tracking (the click tracking document's form)",
                        TEAM, (200, ref(RouteMutationResponse)), (400, 401, 404, 409, 422),
                        (ROUTE_ID,), ref(PatchRouteData), False, {"track_clicks": True}),
        },
        "/projects/{project_id}/routes": {"get": op(
            "A project's routes", TEAM, (200, ref(CursorPage[RouteListData])), (401, 404, 422),
            (param("project_id", "path", STR), *PAGE, *route_filters))},
        "/messages": {"get": op(
            "Recipients' copies of sent emails, newest first", TEAM,
            (200, ref(CursorPage[MessageListData])), (401, 422),
            (*PAGE, param("sort", "query", STR),
             *(param(f"filter[{name}]", "query", STR) for name in MESSAGE_FILTERS)))},
        "/messages/{message_id}/source": {"get": op(
            "The copy as it went to the upstream", TEAM, (200, None), (401, 404, 410),
            (MESSAGE_ID,), text_type="message/rfc822")},
        "/messages/{message_id}/html": {"get": op(
            "The copy's HTML body", TEAM, (200, None), (401, 404, 410), (MESSAGE_ID,),
            text_type="text/html")},
        "/messages/{message_id}/text": {"get": op(
            "The copy's plain-text body", TEAM, (200, None), (401, 404, 410), (MESSAGE_ID,))},
        "/messages/{message_id}": {"get": op(
            "One recipient's copy of a sent email", TEAM, (200, ref(MessageData)),
            (401, 404), (MESSAGE_ID,))},
        "/messages/{message_id}/events": {"get": op(
            "A message's events: queued, delivery attempts, clicks", TEAM,
            (200, ref(CursorPage[MessageEventData])), (401, 404, 422),
            (MESSAGE_ID, param("include_machine_events", "query", FLAG),
             param("sort", "query", STR), *PAGE))},
        "/messages/{message_id}/links": {"get": op(
            "A message's links and their clicks (clickrelay)", TEAM, (200, ref(MessageLinks)),
            (401, 404, 422), (MESSAGE_ID, param("include_machine", "query", FLAG)))},
        "/stats": {"get": op("Sending and click statistics per day", TEAM,
                             (200, ref(StatsData)), (401, 404, 422), stats_params)},
        "/webhooks": {"get": op(
            "The configured webhooks", TEAM, (200, ref(CursorPage[WebhookListData])), (401, 422),
            (*CURSOR, param("filter[project]", "query", STR),
             param("filter[enabled]", "query", FLAG), param("filter[event]", "query", STR),
             param("filter[search]", "query", STR)))},
        "/webhooks/{webhook_id}": {"get": op("A webhook", TEAM, (200, ref(WebhookData)),
                                             (401, 404, 409), (WEBHOOK_ID,))},
        "/webhooks/{webhook_id}/test": {"post": op(
            "Send a webhook.test delivery", TEAM, (200, ref(TestWebhookResponse)),
            (401, 404, 409), (WEBHOOK_ID,))},
        "/webhooks/{webhook_id}/deliveries": {"get": op(
            "A webhook's deliveries, newest first", TEAM,
            (200, ref(CursorPage[WebhookDeliveryListData])), (401, 404, 409, 422),
            (WEBHOOK_ID, *CURSOR, param("filter[status]", "query", STR),
             param("filter[event_type]", "query", STR),
             param("filter[from_date]", "query", STR), param("filter[to_date]", "query", STR)))},
        "/webhooks/{webhook_id}/deliveries/{delivery_id}": {"get": op(
            "One delivery of a webhook, with its payload", TEAM,
            (200, ref(WebhookDeliveryData)), (401, 404, 409),
            (WEBHOOK_ID, param("delivery_id", "path", STR)))},
        "/openapi.json": {"get": op("This document", [], (200, {"type": "object"}), ())},
    }


def openapi_document(server_url: str) -> dict[str, Any]:
    document: dict[str, Any] = plain(_document(server_url))
    return document


def plain(value: Any) -> Any:
    """``value`` in JSON's types: mappings as new dicts, tuples as lists."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _document(server_url: str) -> dict[str, Any]:
    ref, schemas = shapes()
    error = {"application/json": {"schema": ref(Error)}}
    reasons = {400: "Malformed JSON", 401: "Missing or invalid token", 404: "Not found",
               409: "Conflict (idempotency key, configuration file)",
               410: "The message's content is no longer kept",
               422: "Validation failed; errors names the field",
               429: "Too many invalid tokens from the client's network; Retry-After says"
                    " when to try again (the token was not checked)"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "clickrelay API", "version": "1",
                 "description": "Lettermint-compatible send, route, event, stats and "
                                "webhook API of a self-hosted click-tracking relay."},
        "servers": [{"url": server_url}],
        "paths": paths(ref),
        "components": {
            "schemas": schemas,
            "responses": {f"E{code}": {"description": text, "content": error}
                          for code, text in reasons.items()},
            "securitySchemes": {
                "sendingToken": {"type": "apiKey", "in": "header", "name": "x-lettermint-token"},
                "teamToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }
