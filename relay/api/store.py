"""What the HTTP API asks of the store, declared by the API: one Protocol per group of
views, and ``ApiStore``, all of them, which ``relay.api.common.Api`` holds, so that
mypy checks the real store (``store.store.Store``) against what the views call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from store.events import EventRecord
from store.idempotency import KeyClaim, KeyState
from store.records import (
    ConfigItem,
    DeliveryAttempt,
    ItemTimes,
    MessageInfo,
    MessageListFilter,
)
from store.reports import (
    ClickTotals,
    DeliveryRow,
    DestinationCounts,
    MessageLinkCounts,
    OpenFirsts,
    ReportFilter,
    SendingCounts,
)
from store.webhooks import NewDelivery


# Idempotency keys of the send API.
class IdempotencyStore(Protocol):
    async def claim_idempotency_keys(
        self, project_id: str, claims: Sequence[KeyClaim], now: int, ttl_us: int
    ) -> list[KeyState]: ...

    async def complete_idempotency_key(
        self, project_id: str, scope: str, key: str, response: str
    ) -> None: ...

    async def release_idempotency_keys(
        self, project_id: str, keys: Sequence[tuple[str, str]]
    ) -> None: ...


# Messages, their content, their events and their links.
class MessageReportStore(Protocol):
    async def get_message(self, message_id: str) -> MessageInfo | None: ...

    async def list_messages(
        self, where: MessageListFilter, *, offset: int, limit: int
    ) -> list[MessageInfo]: ...

    async def message_source(self, message_id: str) -> bytes | None: ...

    async def delivery_attempts(self, message_id: str) -> list[DeliveryAttempt]: ...

    async def message_click_events(
        self, message_id: str, *, include_machine: bool, descending: bool, limit: int,
        include_opens: bool = False,
    ) -> list[tuple[EventRecord, str]]: ...

    async def message_link_counts(self, message_id: str) -> list[MessageLinkCounts]: ...


# Counts for /v1/stats and a route's statistics.
class StatsStore(Protocol):
    async def sending_counts(
        self, since: int, until: int, where: ReportFilter, *, daily: bool
    ) -> list[SendingCounts]: ...

    async def click_totals(
        self, since: int, until: int, where: ReportFilter, *, daily: bool, opens: bool = False
    ) -> list[ClickTotals]: ...

    async def destination_counts(
        self, since: int, until: int, where: ReportFilter, *, limit: int
    ) -> list[DestinationCounts]: ...

    async def open_firsts(self, since: int, until: int, where: ReportFilter
                          ) -> list[OpenFirsts]: ...


# Webhook deliveries.
class WebhookReportStore(Protocol):
    async def enqueue_delivery(self, delivery: NewDelivery) -> None: ...

    async def webhook_delivery_page(
        self, project_id: str, webhook_id: str, *, status: str | None, event_type: str | None,
        since: int | None, until: int | None, offset: int, limit: int,
    ) -> list[DeliveryRow]: ...

    async def webhook_delivery(
        self, project_id: str, webhook_id: str, delivery_id: str
    ) -> tuple[DeliveryRow, str] | None: ...

    async def webhook_last_called(self, project_id: str, webhook_id: str) -> int | None: ...


# The times of the configuration's routes and webhooks.
class ConfigItemStore(Protocol):
    async def note_config_items(
        self, items: Sequence[ConfigItem], now: int
    ) -> dict[tuple[str, str], ItemTimes]: ...


class ApiStore(IdempotencyStore, MessageReportStore, StatsStore, WebhookReportStore,
               ConfigItemStore, Protocol):
    """Everything the API calls on the store."""
