"""The operator's hand on the spool: a queued copy retried now, or dropped (recorded as
failed, its body freed). ``clickrelay spool retry|drop`` and the dashboard's Spool page
both come here (README, "The spool"; docs/dashboard.md)."""

from __future__ import annotations

from typing import Literal, Protocol

from store.clock import now_us

SpoolAction = Literal["retry", "drop"]
SPOOL_ACTIONS: tuple[SpoolAction, ...] = ("retry", "drop")
DROP_REASON = "dropped by the operator"


class SpoolStore(Protocol):
    async def requeue_message(self, message_id: str, now: int) -> bool: ...

    async def drop_message(self, message_id: str, now: int, reason: str) -> bool: ...


async def act_on_copy(store: SpoolStore, action: SpoolAction, message_id: str) -> bool:
    """Retry or drop one queued copy; False when no queued copy has that id."""
    now = now_us()
    if action == "retry":
        return await store.requeue_message(message_id, now)
    return await store.drop_message(message_id, now, DROP_REASON)
