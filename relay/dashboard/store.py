"""What the dashboard asks of the store, declared by the dashboard (as ``relay.api.store``
does for the API), so that mypy checks the real store (``store.store.Store``)
against what its pages call."""

from __future__ import annotations

from typing import Protocol

from relay.api.store import MessageReportStore, WebhookReportStore
from relay.delivery.spool import SpoolStore
from store.records import (
    ActivityBucket,
    DashboardSession,
    MessageInfo,
    MessageListRow,
    SpoolSummary,
)


class SessionStore(Protocol):
    async def create_session(self, session: DashboardSession) -> None: ...

    async def get_session(self, id_hash: str, now: int) -> DashboardSession | None: ...

    async def end_session(self, id_hash: str) -> None: ...

    async def purge_sessions(self, now: int) -> None: ...


class PageStore(Protocol):
    async def message_page(
        self, project_id: str, *, search: str, before: tuple[int, str] | None, limit: int
    ) -> list[MessageListRow]: ...

    async def click_activity(
        self, project_id: str, since: int, until: int, bucket_us: int, *,
        route_id: str | None = None, tag: str | None = None, settled_before: int,
        kept_since: int,
    ) -> list[ActivityBucket]: ...

    async def earliest_pending_click(self) -> int | None: ...

    async def spool_summary(self, now: int) -> SpoolSummary: ...

    async def spool_copies(self, status: str, limit: int) -> list[MessageInfo]: ...


class DashboardStore(SessionStore, PageStore, MessageReportStore, WebhookReportStore,
                     SpoolStore, Protocol):
    """Everything the dashboard calls on the store."""
