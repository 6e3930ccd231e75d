"""The shapes of the API's bodies other than a send request (``relay.api.send_request``): the
route changes it takes, and every answer it gives. The views build their answers from
these, and ``/v1/openapi.json`` describes them from the same declarations.

Names and fields follow the Lettermint SDK's types (``RouteData``, ``MessageData``,
``StatsData``, …); fields Lettermint has and clickrelay cannot fill are ``null``;
clickrelay's additions are said where they are."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import Field, WithJsonSchema

from relay.api.model import Body, Shape, Unsupported

Item = TypeVar("Item")
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]

NOT_EDITABLE = Unsupported("not supported: clickrelay routes keep only their tracking "
                           "settings in the API; edit the configuration file for the rest")
NOT_A_SETTING = Unsupported("not supported: clickrelay routes have only track_clicks and "
                            "track_opens")


class UpdateRouteSettingsData(Body):
    track_clicks: bool | None = None
    track_opens: bool | None = None
    generate_plaintext_fallback: Annotated[Any, NOT_A_SETTING] = None
    suppress_auto_responders: Annotated[Any, NOT_A_SETTING] = None
    suppress_disposable_recipients: Annotated[Any, NOT_A_SETTING] = None
    tls: Annotated[Any, NOT_A_SETTING] = None
    disable_hosted_unsubscribe: Annotated[Any, NOT_A_SETTING] = None
    redact_email_content: Annotated[Any, NOT_A_SETTING] = None


class UpdateRouteData(Body):
    """What the SDK's `routes.update` sends: only the tracking settings can change."""

    name: Annotated[Any, NOT_EDITABLE] = None
    inbound_settings: Annotated[Any, NOT_EDITABLE] = None
    inbound_domain: Annotated[Any, NOT_EDITABLE] = None
    inbound_spam_threshold: Annotated[Any, NOT_EDITABLE] = None
    attachment_delivery: Annotated[Any, NOT_EDITABLE] = None
    settings: UpdateRouteSettingsData | None = None


class PatchRouteData(Body):
    """A route's tracking, changed in the click tracking document's form."""

    unknown_hint = "PATCH takes track_clicks and track_opens"

    track_clicks: bool | None = None
    track_opens: bool | None = None


class CursorPage(Shape, Generic[Item]):
    """A page as the SDKs' `iterate_*` read it; `next_cursor` is null on the last."""

    data: list[Item]
    path: str | None
    per_page: int
    next_cursor: str | None
    next_page_url: str | None
    prev_cursor: str | None
    prev_page_url: str | None


class Error(Shape):
    """Every refusal; `errors` names the field of a 422 (`to[1]`, `settings.track_clicks`)."""

    error: str
    message: str
    errors: dict[str, list[str]] | None = None
    details: Any = None


class PendingSendMailResponse(Shape):
    message_id: str  # the first recipient's copy
    status: Literal["pending"]


class RouteTracking(Shape):
    track_clicks: bool
    track_opens: bool


class RouteListData(Shape):
    id: str
    slug: str
    name: str
    route_type: str
    is_default: bool
    webhooks_count: int
    suppressed_recipients_count: int
    # Routes live in the configuration file: its time stands for both.
    created_at: Timestamp
    updated_at: Timestamp


class RouteStatisticData(Shape):
    date: str
    sent_count: int
    delivered_count: int
    opened_count: int
    clicked_count: int
    hard_bounce_count: int
    spam_complaint_count: int
    inbound_received_count: int
    observed_opened_count: int | None
    human_opened_count: int | None
    privacy_opened_count: int | None
    effective_opened_count: int | None
    machine_opened_count: int | None
    machine_clicked_count: int | None


class RouteData(RouteListData):
    project_id: str
    settings: RouteTracking
    # Only with ?include=statistics: the last 30 days.
    statistics: list[RouteStatisticData] | None = Field(default=None,
                                                        exclude_if=lambda v: v is None)


class RouteMutationResponse(Shape):
    data: RouteData
    message: str


class NameValue(Shape):
    name: str
    value: str


class Recipient(Shape):
    email: str
    name: str | None  # as the message's To or Cc field names the address
    sandbox_result: None


class MessageListData(Shape):
    """One recipient's copy of a sent email, in a list. `to` is the copy's recipient;
    `from_name` and the names are the message's own, `reply_to` its Reply-To addresses."""

    id: str
    type: Literal["outbound"]
    status: str
    delivery_mode: Literal["live"]
    sandbox_result: None
    scheduled_at: None
    from_email: str
    from_name: str | None
    subject: str | None
    to: list[Recipient]
    cc: None
    bcc: None
    reply_to: list[str] | None
    tag: str | None
    tags: list[NameValue]
    status_changed_at: Timestamp
    created_at: Timestamp


class MessageData(MessageListData):
    """One recipient's copy of a sent email."""

    attachments: None
    metadata: dict[str, str]
    route_id: str
    # clickrelay's additions
    track_clicks: bool
    attempts: int
    last_error: str | None


class MessageEventData(Shape):
    message_id: str
    event: str
    tag: str | None
    tags: list[NameValue]
    # A delivery attempt's code and detail, a click's destination and verdict.
    metadata: dict[str, Any] | None
    timestamp: Timestamp


class MessageLink(Shape):
    link_index: int
    destination_url: str
    anchor_text: str
    clicked: int
    unique_clicked: int
    machine_clicked: int | None


class MessageLinks(Shape):
    """clickrelay's addition: a message's tracked links and their clicks."""

    message_id: str
    data: list[MessageLink]


class StatsTypeData(Shape):
    sent: int
    hard_bounced: int
    spam_complaints: int


class StatsInbound(Shape):
    received: int


class StatsTotals(Shape):
    sent: int
    delivered: int
    hard_bounced: int
    spam_complaints: int
    # Opens, unique per recipient (docs/opens.md); null where no copy had the pixel
    opened: int | None  # observed_opened
    clicked: int
    inbound: StatsInbound
    transactional: StatsTypeData | None  # with project_id
    broadcast: StatsTypeData | None
    observed_opened: int | None  # human opens plus unresolved privacy-proxy opens
    human_opened: int | None  # genuine opens, and clicks people made (implied opens)
    privacy_opened: int | None  # counted privacy-proxy opens (Gmail's image proxy)
    effective_opened: int | None
    machine_opened: int | None  # with include_machine: Apple's MPP, gateways, …
    machine_clicked: int | None  # with include_machine
    # clickrelay's additions: messages clicked at least once
    unique_clicked: int
    machine_unique_clicked: int | None
    # and, as the SDK's analytics name them: human_opened / open_tracked_delivered
    open_tracked_delivered: int
    human_open_rate: float | None
    # every counted open (not once per recipient), and every machine one (include_machine)
    opened_events: int | None
    machine_opened_events: int | None


class StatsDay(StatsTotals):
    date: str


class StatsLink(Shape):
    """clickrelay's addition: clicks per destination URL."""

    destination_url: str
    clicked: int
    unique_clicked: int
    machine_clicked: int | None
    machine_unique_clicked: int | None


class StatsData(Shape):
    from_: str = Field(serialization_alias="from")
    to: str
    totals: StatsTotals
    daily: list[StatsDay]
    links: list[StatsLink]


class WebhookListData(Shape):
    id: str
    scope: Literal["project"]
    project_ids: list[str]
    route_ids: list[str]
    route_id: str | None
    name: str
    url: str
    has_basic_auth: bool
    events: list[str]
    enabled: bool
    delivery_mode_filter: str
    last_called_at: Timestamp | None
    # Webhooks live in the configuration file: its time stands for both.
    created_at: Timestamp
    updated_at: Timestamp


class WebhookData(WebhookListData):
    include_machine_events: bool


class TestWebhookResponse(Shape):
    message: str
    delivery_id: str


class WebhookDeliveryListData(Shape):
    id: str
    webhook_id: str
    event_type: str
    source_scope: str | None
    source_project_id: str | None
    source_route_id: str | None
    status: str
    sandbox: bool
    attempt_number: int
    http_status_code: int | None
    duration_ms: int | None
    delivered_at: Timestamp | None
    created_at: Timestamp
    next_retry_at: Timestamp | None
    error_message: str | None


class WebhookDeliveryData(WebhookDeliveryListData):
    """One delivery with what it sent: `payload` is the JSON body (every attempt sends the
    same bytes); clickrelay keeps no response body or headers (null)."""

    payload: dict[str, Any]
    response_body: None
    response_headers: None
    timestamp: Timestamp  # when the event was put in the outbox
