"""The OpenAPI 3.1 description of what clickrelay serves under ``/v1`` (DESIGN §8), served
at ``GET /v1/openapi.json``. Shapes follow the Lettermint SDK's types; clickrelay's
additions are marked as such. Built from small helpers so that it reads like the API."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
NSTR: Schema = {"type": ["string", "null"]}
BOOL: Schema = {"type": "boolean"}
INT: Schema = {"type": "integer"}
NINT: Schema = {"type": ["integer", "null"]}
TIME: Schema = {"type": "string", "format": "date-time"}
NTIME: Schema = {"type": ["string", "null"], "format": "date-time"}
FLAG: Schema = {"type": "string", "enum": ["1", "0", "true", "false"]}
STR_LIST: Schema = {"type": "array", "items": STR}
STR_MAP: Schema = {"type": "object", "additionalProperties": STR}
TEAM: list[Any] = [{"teamToken": []}]
SENDING: list[Any] = [{"sendingToken": []}]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: dict[str, Schema], required: tuple[str, ...] | str = "*",
        closed: bool = False) -> Schema:
    names = tuple(props) if required == "*" else tuple(required)
    schema: Schema = {"type": "object", "properties": props, "required": list(names)}
    if closed:
        schema["additionalProperties"] = False
    return schema


def array(items: Schema, **limits: int) -> Schema:
    return {"type": "array", "items": items, **limits}


def page(item: str) -> Schema:
    return obj({"data": array(ref(item)), "path": NSTR, "per_page": INT,
                "next_cursor": NSTR, "next_page_url": NSTR, "prev_cursor": NSTR,
                "prev_page_url": NSTR})


def param(name: str, where: str, schema: Schema, required: bool = False,
          example: Any = None) -> Schema:
    out = {"name": name, "in": where, "schema": schema, "required": required or where == "path"}
    if example is not None:
        out["example"] = example
    return out


def op(summary: str, security: list[Any], ok: tuple[int, Schema | None],
       errors: tuple[int, ...] = (401,), params: tuple[Schema, ...] = (),
       body: Schema | None = None, body_required: bool = True, example: Any = None) -> Schema:
    status, schema = ok
    content = ({"text/plain": {"schema": STR}} if schema is None
               else {"application/json": {"schema": schema}})
    responses: dict[str, Any] = {str(status): {"description": "OK", "content": content}}
    # Where a token is checked, too many wrong ones from a network get 429 (unchecked).
    for code in (*errors, 429) if 401 in errors else errors:
        responses[str(code)] = {"$ref": f"#/components/responses/E{code}"}
    out: Schema = {"summary": summary, "security": security, "responses": responses,
                   "parameters": list(params)}
    if body is not None:
        media: Schema = {"schema": body}
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
IDEMPOTENCY = param("Idempotency-Key", "header", {"type": "string", "minLength": 1,
                                                   "maxLength": 255})

SEND_FIELDS: dict[str, Schema] = {
    "from": STR, "to": array(STR, minItems=1), "cc": STR_LIST, "bcc": STR_LIST,
    "reply_to": STR_LIST, "subject": STR, "html": NSTR, "text": NSTR,
    "headers": STR_MAP, "metadata": STR_MAP, "tag": NSTR, "route": STR,
    "settings": obj({"track_clicks": BOOL, "track_opens": BOOL}, (), closed=True),
    "attachments": array(ref("Attachment")),
}
SEND_EXAMPLE = {
    "from": "Acme <hello@acme.example>", "to": ["jane@example.org"], "subject": "Your receipt",
    "html": '<p>Thanks! <a href="https://acme.example/orders/42">Your order</a></p>',
    "text": "Thanks! https://acme.example/orders/42", "tag": "receipts",
    "metadata": {"order": "42"}, "settings": {"track_clicks": True},
}
ROUTE_SETTINGS = obj({"track_clicks": BOOL, "track_opens": BOOL})
ROUTE_LIST_FIELDS: dict[str, Schema] = {
    "id": STR, "slug": STR, "name": STR, "route_type": STR, "is_default": BOOL,
    "webhooks_count": INT, "suppressed_recipients_count": INT, "created_at": TIME,
    "updated_at": TIME,
}
STATS_DAY_FIELDS: dict[str, Schema] = {
    "sent": INT, "delivered": INT, "hard_bounced": INT, "spam_complaints": INT,
    "opened": NINT, "clicked": NINT, "inbound": obj({"received": INT}),
    "transactional": {"oneOf": [ref("StatsTypeData"), {"type": "null"}]},
    "broadcast": {"oneOf": [ref("StatsTypeData"), {"type": "null"}]},
    "effective_opened": NINT, "machine_opened": NINT, "machine_clicked": NINT,
    "unique_clicked": INT, "machine_unique_clicked": NINT,
}
WEBHOOK_FIELDS: dict[str, Schema] = {
    "id": STR, "scope": STR, "project_ids": STR_LIST, "route_ids": STR_LIST,
    "route_id": NSTR, "name": STR, "url": STR, "has_basic_auth": BOOL, "events": STR_LIST,
    "enabled": BOOL, "delivery_mode_filter": STR, "last_called_at": NTIME,
    "created_at": TIME, "updated_at": TIME,
}


def schemas() -> dict[str, Schema]:
    return {
        "Error": obj({"error": STR, "message": STR, "errors": {
            "type": "object", "additionalProperties": STR_LIST}, "details": {}},
            ("error", "message")),
        "Attachment": obj({"filename": STR, "content": STR, "content_type": NSTR,
                           "content_id": NSTR}, ("filename", "content"), closed=True),
        "SendMailRequest": obj(SEND_FIELDS, ("from", "to", "subject"), closed=True),
        "SendBatchMailItem": obj({**SEND_FIELDS, "idempotency_key": {
            "type": "string", "minLength": 1, "maxLength": 255}},
            ("from", "to", "subject"), closed=True),
        "PendingSendMailResponse": obj({"message_id": STR,
                                        "status": {"type": "string", "const": "pending"}}),
        "RouteData": obj({**ROUTE_LIST_FIELDS, "project_id": STR, "settings": ROUTE_SETTINGS,
                          "statistics": array(ref("RouteStatisticData"))},
                         (*ROUTE_LIST_FIELDS, "project_id", "settings")),
        "RouteListData": obj(ROUTE_LIST_FIELDS),
        "RouteMutationResponse": obj({"data": ref("RouteData"), "message": STR}),
        "RouteStatisticData": obj({n: INT for n in (
            "sent_count", "delivered_count", "opened_count", "clicked_count",
            "hard_bounce_count", "spam_complaint_count", "inbound_received_count")}
            | {"date": STR, "effective_opened_count": NINT, "machine_opened_count": NINT,
               "machine_clicked_count": NINT}),
        "UpdateRouteData": obj({"name": NSTR, "settings": {"type": ["object", "null"],
                                "properties": {"track_clicks": {"type": ["boolean", "null"]},
                                               "track_opens": {"type": ["boolean", "null"]}},
                                "additionalProperties": False}}, (), closed=True),
        "PatchRouteData": obj({"track_clicks": BOOL, "track_opens": BOOL}, (), closed=True),
        "MessageData": obj({
            "id": STR, "type": STR, "status": STR, "delivery_mode": STR, "tag": NSTR,
            "tags": array(obj({"name": STR, "value": STR})), "from_email": STR,
            "subject": NSTR, "to": array(obj({"email": STR, "name": NSTR})),
            "metadata": STR_MAP, "route_id": STR, "created_at": TIME,
            "status_changed_at": NTIME}),
        "MessageEventData": obj({"message_id": STR, "event": STR, "tag": NSTR,
                                 "tags": array(obj({"name": STR, "value": STR})),
                                 "metadata": {"type": ["object", "null"]}, "timestamp": TIME}),
        "MessageLinks": obj({"message_id": STR, "data": array(obj({
            "link_index": INT, "destination_url": STR, "anchor_text": STR, "clicked": INT,
            "unique_clicked": INT, "machine_clicked": NINT}))}),
        "StatsTypeData": obj({"sent": INT, "hard_bounced": INT, "spam_complaints": INT}),
        "StatsData": obj({"from": STR, "to": STR, "totals": obj(STATS_DAY_FIELDS),
                          "daily": array(obj({"date": STR, **STATS_DAY_FIELDS})),
                          "links": array(obj({"destination_url": STR, "clicked": INT,
                                              "unique_clicked": INT, "machine_clicked": NINT,
                                              "machine_unique_clicked": NINT}))}),
        "WebhookListData": obj(WEBHOOK_FIELDS),
        "WebhookData": obj({**WEBHOOK_FIELDS, "include_machine_events": BOOL}),
        "TestWebhookResponse": obj({"message": STR, "delivery_id": STR}),
        "WebhookDeliveryListData": obj({
            "id": STR, "webhook_id": STR, "event_type": STR, "source_scope": NSTR,
            "source_project_id": NSTR, "source_route_id": NSTR, "status": STR,
            "sandbox": BOOL, "attempt_number": INT, "http_status_code": NINT,
            "duration_ms": NINT, "delivered_at": NTIME, "created_at": TIME,
            "next_retry_at": NTIME}),
    }


def paths() -> dict[str, Any]:
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
        "/send": {"post": op("Send an email", SENDING, (202, ref("PendingSendMailResponse")),
                             (400, 401, 409, 422), (IDEMPOTENCY,), ref("SendMailRequest"),
                             example=SEND_EXAMPLE)},
        "/send/batch": {"post": op(
            "Send up to 500 emails", SENDING, (202, array(ref("PendingSendMailResponse"))),
            (400, 401, 409, 422), (IDEMPOTENCY,),
            array(ref("SendBatchMailItem"), minItems=1, maxItems=500),
            example=[SEND_EXAMPLE, {**SEND_EXAMPLE, "to": ["joe@example.org"]}])},
        "/routes/{route_id}": {
            "get": op("A route", TEAM, (200, ref("RouteData")), (401, 404, 422),
                      (ROUTE_ID, param("include", "query", STR),
                       param("include_machine", "query", FLAG))),
            "put": op("Change a route's tracking settings (written back to the file)", TEAM,
                      (200, ref("RouteMutationResponse")), (400, 401, 404, 409, 422),
                      (ROUTE_ID,), ref("UpdateRouteData"), False,
                      {"settings": {"track_clicks": True}}),
            "patch": op("Change a route's tracking (the click tracking document's form)",
                        TEAM, (200, ref("RouteMutationResponse")), (400, 401, 404, 409, 422),
                        (ROUTE_ID,), ref("PatchRouteData"), False, {"track_clicks": True}),
        },
        "/projects/{project_id}/routes": {"get": op(
            "A project's routes", TEAM, (200, page("RouteListData")), (401, 404, 422),
            (param("project_id", "path", STR), *PAGE, *route_filters))},
        "/messages/{message_id}": {"get": op(
            "One recipient's copy of a sent email", TEAM, (200, ref("MessageData")),
            (401, 404), (MESSAGE_ID,))},
        "/messages/{message_id}/events": {"get": op(
            "A message's events: queued, delivery attempts, clicks", TEAM,
            (200, page("MessageEventData")), (401, 404, 422),
            (MESSAGE_ID, param("include_machine_events", "query", FLAG),
             param("sort", "query", STR), *PAGE))},
        "/messages/{message_id}/links": {"get": op(
            "A message's links and their clicks (clickrelay)", TEAM, (200, ref("MessageLinks")),
            (401, 404, 422), (MESSAGE_ID, param("include_machine", "query", FLAG)))},
        "/stats": {"get": op("Sending and click statistics per day", TEAM,
                             (200, ref("StatsData")), (401, 404, 422), stats_params)},
        "/webhooks": {"get": op(
            "The configured webhooks", TEAM, (200, page("WebhookListData")), (401, 422),
            (*CURSOR, param("filter[project]", "query", STR),
             param("filter[enabled]", "query", FLAG), param("filter[event]", "query", STR),
             param("filter[search]", "query", STR)))},
        "/webhooks/{webhook_id}": {"get": op("A webhook", TEAM, (200, ref("WebhookData")),
                                             (401, 404, 409), (WEBHOOK_ID,))},
        "/webhooks/{webhook_id}/test": {"post": op(
            "Send a webhook.test delivery", TEAM, (200, ref("TestWebhookResponse")),
            (401, 404, 409), (WEBHOOK_ID,))},
        "/webhooks/{webhook_id}/deliveries": {"get": op(
            "A webhook's deliveries, newest first", TEAM,
            (200, page("WebhookDeliveryListData")), (401, 404, 409, 422),
            (WEBHOOK_ID, *CURSOR, param("filter[status]", "query", STR),
             param("filter[event_type]", "query", STR),
             param("filter[from_date]", "query", STR), param("filter[to_date]", "query", STR)))},
        "/openapi.json": {"get": op("This document", [], (200, {"type": "object"}), ())},
    }


def openapi_document(server_url: str) -> dict[str, Any]:
    error = {"application/json": {"schema": ref("Error")}}
    reasons = {400: "Malformed JSON", 401: "Missing or invalid token", 404: "Not found",
               409: "Conflict (idempotency key, configuration file)",
               422: "Validation failed; errors names the field",
               429: "Too many invalid tokens from the client's network; Retry-After says"
                    " when to try again (the token was not checked)"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "clickrelay API", "version": "1",
                 "description": "Lettermint-compatible send, route, event, stats and "
                                "webhook API of a self-hosted click-tracking relay."},
        "servers": [{"url": server_url}],
        "paths": paths(),
        "components": {
            "schemas": schemas(),
            "responses": {f"E{code}": {"description": text, "content": error}
                          for code, text in reasons.items()},
            "securitySchemes": {
                "sendingToken": {"type": "apiKey", "in": "header", "name": "x-lettermint-token"},
                "teamToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }
