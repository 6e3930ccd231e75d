"""The state of the three work queues (spool, pending observations, webhook outbox) for
the health check and the queue gauges: how much waits, how much is claimed, and since
when the oldest item has been due."""

from __future__ import annotations

from dataclasses import dataclass

from store.db import Database

# (queue name, table, pending condition, due column, created column)
_QUEUES = (
    ("spool", "messages", "status = 'queued'", "next_attempt_at", "created_at"),
    ("observations", "observations", "state = 'pending'", "promote_after", "at"),
    ("webhook_deliveries", "webhook_deliveries", "status = 'pending'", "next_attempt_at",
     "created_at"),
)


@dataclass(frozen=True)
class QueueState:
    name: str
    pending: int  # items not finished yet
    claimed: int  # of those, held by a worker (claimed_by set)
    oldest_due: int | None  # earliest due time of a pending item, µs
    oldest_created: int | None  # when the oldest pending item was written, µs

    def overdue_us(self, now: int) -> int:
        """How long the earliest due item has been waiting past its due time."""
        return max(0, now - self.oldest_due) if self.oldest_due is not None else 0

    def age_us(self, now: int) -> int:
        return max(0, now - self.oldest_created) if self.oldest_created is not None else 0


class QueueStore:
    db: Database

    async def queue_states(self) -> list[QueueState]:
        """One read of every queue, in the order spool, observations, webhook deliveries."""
        selects = [
            f"SELECT '{name}', COUNT(*), COUNT(claimed_by), MIN({due}), MIN({created})"
            f" FROM {table} WHERE {pending}"
            for name, table, pending, due, created in _QUEUES
        ]
        rows = await self.db.fetchall(" UNION ALL ".join(selects))
        return [QueueState(*tuple(r)) for r in rows]
