"""Webhooks through the API (docs/webhooks.md, docs/api.md): the configured endpoints,
a ``webhook.test`` delivery on demand, each endpoint's deliveries with their last
attempt, and one delivery with its payload. Webhooks are defined in the configuration
file; the API reads them and never changes them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web

from relay.api.common import (
    Api,
    ItemStamps,
    api_of,
    cursor_page,
    item_stamps,
    json_response,
    page_request,
    query_bool,
    query_day_start,
    require_team,
)
from relay.api.shapes import (
    TestWebhookResponse,
    WebhookData,
    WebhookDeliveryData,
    WebhookDeliveryListData,
    WebhookListData,
)
from relay.api.store import WebhookReportStore
from relay.config.load import Config
from relay.errors import BadInput, Conflict, NotFound
from store.clock import now_us
from store.ids import new_id
from store.reports import DeliveryRow
from store.webhooks import NewDelivery
from tracker.config import ProjectConfig, WebhookConfig
from tracker.webhooks.events import Envelope, envelope_body, iso_timestamp

WEBHOOK_TEST = "webhook.test"
# The outbox's states as the SDK's WebhookDeliveryStatus.
DELIVERY_STATUS: Final[Mapping[str, str]] = MappingProxyType(
    {"pending": "pending", "delivered": "success", "failed": "failed"})


async def list_webhooks(request: web.Request) -> web.Response:
    require_team(request)
    api = api_of(request)
    hooks = _filtered(request, api.live())
    page = page_request(request, cursor_param="cursor")
    chunk = hooks[page.offset : page.offset + page.size]
    items = []
    stamps = await item_stamps(api)
    for project, hook in chunk:
        data = await webhook_data(request, project, hook, stamps)
        # The SDK's list item has all but include_machine_events.
        items.append(WebhookListData(**data.model_dump(exclude={"include_machine_events"})))
    return json_response(cursor_page(request, page, items, page.offset + page.size < len(hooks)))


async def get_webhook(request: web.Request) -> web.Response:
    require_team(request)
    api = api_of(request)
    project, hook = find_webhook(api.live(), request.match_info["webhook_id"])
    return json_response(await webhook_data(request, project, hook, await item_stamps(api)))


async def test_webhook(request: web.Request) -> web.Response:
    """Put a signed ``webhook.test`` event in the outbox; the dispatcher sends it."""
    require_team(request)
    api = api_of(request)
    project, hook = find_webhook(api.live(), request.match_info["webhook_id"])
    delivery_id = await queue_test_delivery(api, project, hook)
    return json_response(TestWebhookResponse(message="Test webhook queued.",
                                             delivery_id=delivery_id))


async def queue_test_delivery(api: Api, project: ProjectConfig, hook: WebhookConfig) -> str:
    """A signed ``webhook.test`` event in the outbox for the dispatcher to send (the API's
    test and the dashboard's **Send test**); its delivery id."""
    if not hook.enabled:
        raise Conflict(f"Webhook {hook.id!r} is disabled (enabled = false in the configuration).")
    now, delivery_id = now_us(), new_id()
    data = {"message": "This is a test event from clickrelay.", "webhook_id": hook.id,
            "project_id": project.id}
    body = envelope_body(Envelope(delivery_id, WEBHOOK_TEST, iso_timestamp(now), data))
    store: WebhookReportStore = api.store
    await store.enqueue_delivery(
        NewDelivery(delivery_id, project.id, hook.id, WEBHOOK_TEST, body, now)
    )
    api.wake_webhooks()
    return delivery_id


async def list_deliveries(request: web.Request) -> web.Response:
    require_team(request)
    api = api_of(request)
    project, hook = find_webhook(api.live(), request.match_info["webhook_id"])
    status = request.query.get("filter[status]") or None
    if status is not None and status not in DELIVERY_STATUS.values():
        raise BadInput("filter[status]", "filter[status]: pending, success or failed")
    page = page_request(request, cursor_param="cursor")
    store: WebhookReportStore = api.store
    rows = await store.webhook_delivery_page(
        project.id, hook.id,
        status=next((k for k, v in DELIVERY_STATUS.items() if v == status), None),
        event_type=request.query.get("filter[event_type]") or None,
        since=query_day_start(request, "filter[from_date]"),
        until=query_day_start(request, "filter[to_date]", 1),
        offset=page.offset, limit=page.size + 1,
    )
    items = [_delivery(row) for row in rows[: page.size]]
    return json_response(cursor_page(request, page, items, len(rows) > page.size))


async def get_delivery(request: web.Request) -> web.Response:
    """One delivery with the body it sends (the SDK's WebhookDeliveryData)."""
    require_team(request)
    api = api_of(request)
    project, hook = find_webhook(api.live(), request.match_info["webhook_id"])
    delivery_id = request.match_info["delivery_id"]
    store: WebhookReportStore = api.store
    found = await store.webhook_delivery(project.id, hook.id, delivery_id)
    if found is None:
        raise NotFound(f"No delivery {delivery_id!r} of webhook {hook.id!r}.")
    row, body = found
    return json_response(WebhookDeliveryData(
        **_delivery(row).model_dump(), payload=json.loads(body), response_body=None,
        response_headers=None, timestamp=iso_timestamp(row.created_at)))


def find_webhook(config: Config, webhook_id: str) -> tuple[ProjectConfig, WebhookConfig]:
    """Webhook ids are unique within a project; the API names them alone, so an id that two
    projects share cannot be told apart."""
    found = [(p, w) for p in config.projects for w in p.webhooks if w.id == webhook_id]
    if not found:
        raise NotFound(f"No webhook {webhook_id!r}.")
    if len(found) > 1:
        names = ", ".join(p.id for p, _ in found)
        raise Conflict(f"Webhook id {webhook_id!r} is used in several projects ({names}); "
                       "give it a unique id in the configuration.")
    return found[0]


async def webhook_data(request: web.Request, project: ProjectConfig, hook: WebhookConfig,
                       stamps: ItemStamps) -> WebhookData:
    """The SDK's WebhookData."""
    api = api_of(request)
    store: WebhookReportStore = api.store
    last = await store.webhook_last_called(project.id, hook.id)
    created, updated = stamps.of("webhook", project.id, hook.id)
    return WebhookData(
        id=hook.id, scope="project", project_ids=[project.id], route_ids=[],
        route_id=None, name=hook.id, url=hook.url,
        has_basic_auth=bool(urlsplit(hook.url).username), events=list(hook.events),
        enabled=hook.enabled, include_machine_events=hook.include_machine_events,
        delivery_mode_filter="live",
        last_called_at=iso_timestamp(last) if last is not None else None,
        created_at=created, updated_at=updated,
    )


def _filtered(request: web.Request, config: Config) -> list[tuple[ProjectConfig, WebhookConfig]]:
    hooks = [(p, w) for p in config.projects for w in p.webhooks]
    project = request.query.get("filter[project]")
    if project:
        hooks = [(p, w) for p, w in hooks if p.id == project]
    enabled = query_bool(request, "filter[enabled]")
    if enabled is not None:
        hooks = [(p, w) for p, w in hooks if w.enabled == enabled]
    event = request.query.get("filter[event]")
    if event:
        hooks = [(p, w) for p, w in hooks if event in w.events]
    scope = request.query.get("filter[scope]")
    if scope:
        hooks = [(p, w) for p, w in hooks if scope == "project"]
    route_id = request.query.get("filter[route_id]")
    if route_id:
        hooks = [(p, w) for p, w in hooks if p.route_by_id(route_id) is not None]
    search = request.query.get("filter[search]", "").lower()
    if search:
        hooks = [(p, w) for p, w in hooks if search in w.id.lower() or search in w.url.lower()]
    return hooks


def _delivery(row: DeliveryRow) -> WebhookDeliveryListData:
    return WebhookDeliveryListData(
        id=row.id, webhook_id=row.webhook_id, event_type=row.event_type,
        source_scope="project", source_project_id=row.project_id,
        source_route_id=None, status=DELIVERY_STATUS.get(row.status, row.status),
        sandbox=False, attempt_number=row.attempts, http_status_code=row.status_code,
        duration_ms=row.duration_ms,
        delivered_at=iso_timestamp(row.finished_at)
        if row.status == "delivered" and row.finished_at else None,
        created_at=iso_timestamp(row.created_at),
        next_retry_at=iso_timestamp(row.next_attempt_at) if row.status == "pending" else None,
        error_message=row.last_error,
    )
