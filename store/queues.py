"""The state of the three work queues (spool, pending observations, webhook outbox) for
the health check and the queue gauges: how much waits, how much is claimed, and since
when the oldest item has been due."""

from __future__ import annotations

from dataclasses import dataclass

from store.backend import Database

# (queue name, table, pending condition, due column, created column)
_QUEUES = (
    ("spool", "messages", "status = 'queued'", "next_attempt_at", "created_at"),
    ("observations", "observations", "state = 'pending'", "promote_after", "at"),
    ("webhook_deliveries", "webhook_deliveries", "status = 'pending'", "next_attempt_at",
     "created_at"),
)


QUEUE_NAMES = tuple(q[0] for q in _QUEUES)


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

    async def renew_claims(self, queue: str, worker: str, until: int) -> int:
        """Extend every claim ``worker`` holds in ``queue`` (a name of ``QUEUE_NAMES``)
        to ``until``: a worker renews its leases while it works, so that they can be short
        and a dead node's items are taken over soon (tracker/workers.py)."""
        return await self.db.write_statement(renewal(queue), (until, worker))


def renewal(queue: str) -> str:
    """The renewal of a worker's claims in ``queue``: ?1 the new end, ?2 the worker. It
    finds them through the queue's index of claimed items (migration 0015): through the
    index of pending ones it walked the whole backlog, holding the write lock."""
    table, pending = next((t, p) for name, t, p, _, _ in _QUEUES if name == queue)
    return f"UPDATE {table} SET claimed_until = ? WHERE claimed_by = ? AND {pending}"
