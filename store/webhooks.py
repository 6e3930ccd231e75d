"""The webhook outbox: deliveries waiting to be sent, their attempts and outcomes.

A delivery is written in the same transaction as its event (``EventStore.record_promotions``)
or on its own (``enqueue_delivery``, for test events); the dispatcher claims due ones with
a lease, sends them, and records every attempt here (docs/webhooks.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from store.backend import Database, Dialect, Row, Tx

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
WEBHOOKS_CHANNEL = "webhooks"  # notified when deliveries are put in the outbox


@dataclass(frozen=True)
class NewDelivery:
    """One event body for one webhook, ready for the outbox."""

    id: str  # the envelope id, the same on every attempt
    project_id: str
    webhook_id: str
    event_type: str
    body: str = field(repr=False)
    created_at: int
    event_id: str | None = None


@dataclass(frozen=True)
class DueDelivery:
    """A delivery claimed for its next attempt."""

    id: str
    project_id: str
    webhook_id: str
    event_type: str
    body: str = field(repr=False)
    attempts: int  # made so far; this one is attempts + 1
    created_at: int


@dataclass(frozen=True)
class DeliveryRecord:
    id: str
    event_id: str | None
    project_id: str
    webhook_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: int
    created_at: int
    finished_at: int | None
    last_error: str | None
    body: str = field(repr=False)


@dataclass(frozen=True)
class WebhookAttempt:
    delivery_id: str
    attempt: int
    at: int
    status_code: int | None
    duration_ms: int
    error: str | None


DELIVERY_INSERT = (
    "INSERT INTO webhook_deliveries (id, event_id, project_id, webhook_id, event_type,"
    " body, status, next_attempt_at, created_at) VALUES (?,?,?,?,?,?,'pending',?,?)"
)


def delivery_rows(deliveries: Sequence[NewDelivery]) -> list[tuple[object, ...]]:
    return [(d.id, d.event_id, d.project_id, d.webhook_id, d.event_type, d.body,
             d.created_at, d.created_at) for d in deliveries]


async def insert_deliveries(
    tx: Tx, deliveries: Sequence[NewDelivery]
) -> None:
    """Add deliveries inside a transaction the caller holds (the event's, for atomicity);
    every node's dispatcher is woken once it commits."""
    if deliveries:
        await tx.executemany(DELIVERY_INSERT, delivery_rows(deliveries))
        await tx.notify(WEBHOOKS_CHANNEL)


@dataclass(frozen=True)
class WebhookRoom:
    """How many more deliveries of one webhook a dispatcher can take on."""

    project_id: str
    webhook_id: str
    room: int


_HOOKS_PER_CLAIM = 400


def _hook_due(dialect: Dialect) -> str:
    return ("SELECT * FROM (SELECT id, next_attempt_at FROM webhook_deliveries"
            " WHERE status = 'pending' AND project_id = ? AND webhook_id = ?"
            " AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?)"
            f" ORDER BY next_attempt_at LIMIT ?{dialect.skip_locked}) due")


class WebhookStore:
    db: Database

    async def enqueue_delivery(self, delivery: NewDelivery) -> None:
        """Put one body in the outbox on its own (a test event)."""
        await self.db.write(lambda tx: insert_deliveries(tx, [delivery]))

    async def claim_due_deliveries(
        self, worker: str, now: int, lease_us: int, limit: int, rooms: Sequence[WebhookRoom]
    ) -> list[DueDelivery]:
        """Atomically take up to ``limit`` due deliveries, oldest due first, at most
        ``room`` of each webhook named in ``rooms`` (deliveries of other webhooks are not
        taken). Each webhook's share is a short index range, so a claim costs the same
        however long the outbox has grown."""
        wanted = [r for r in rooms if r.room > 0]
        claimed: list[DueDelivery] = []
        async with self.db.transaction() as tx:
            # SQLite allows 500 terms in a compound SELECT.
            for start in range(0, len(wanted), _HOOKS_PER_CLAIM):
                if len(claimed) >= limit:
                    break
                chunk = wanted[start : start + _HOOKS_PER_CLAIM]
                union = " UNION ALL ".join([_hook_due(self.db.dialect)] * len(chunk))
                params: list[object] = [worker, now + lease_us]
                for r in chunk:
                    params += [r.project_id, r.webhook_id, now, now, r.room]
                rows = await tx.fetchall(
                    "UPDATE webhook_deliveries SET claimed_by = ?, claimed_until = ?"
                    f" WHERE id IN (SELECT id FROM ({union}) hooks"
                    " ORDER BY next_attempt_at LIMIT ?)"
                    " RETURNING id, project_id, webhook_id, event_type, body, attempts,"
                    " created_at",
                    [*params, limit - len(claimed)],
                )
                claimed += [DueDelivery(*tuple(r)) for r in rows]
        return claimed

    async def fail_other_deliveries(
        self, keep: Sequence[tuple[str, str]], now: int, reason: str,
        noted_after: int | None = None,
    ) -> int:
        """End every pending delivery whose (project id, webhook id) is not in ``keep``:
        its webhook has been removed from the configuration or disabled. With
        ``noted_after`` (a store shared by several nodes), the deliveries of a webhook that
        a node noted in config_items after that time are kept: that node's file is newer
        than the caller's, and has the webhook (a file being rolled out to the nodes)."""
        dialect = self.db.dialect
        newer = ""
        params: tuple[object, ...] = (reason, now, json.dumps([list(k) for k in keep]))
        if noted_after is not None:
            # config_items' key of a webhook (relay/config/live.py item_key).
            newer = (" AND NOT EXISTS (SELECT 1 FROM config_items WHERE kind = 'webhook'"
                     " AND id = project_id || '/' || webhook_id AND updated_at > ?)")
            params += (noted_after,)
        return await self.db.write_statement(
            "UPDATE webhook_deliveries SET status = 'failed', last_error = ?,"
            " finished_at = ?, claimed_by = NULL, claimed_until = NULL"
            f" WHERE status = 'pending' AND NOT EXISTS (SELECT 1 FROM {dialect.json_rows()}"
            f"  WHERE {dialect.json_at(0, 'TEXT')} = project_id"
            f"  AND {dialect.json_at(1, 'TEXT')} = webhook_id){newer}",
            params,
        )

    async def record_webhook_attempt(
        self,
        delivery_id: str,
        *,
        at: int,
        duration_ms: int,
        status_code: int | None,
        error: str | None,
        delivered: bool,
        next_attempt_at: int | None,
    ) -> None:
        """Record one attempt and its consequence: delivered, due again at
        ``next_attempt_at``, or (neither) failed for good. The claim is released."""
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code,"
                " duration_ms, error) SELECT id, attempts + 1, ?, ?, ?, ?"
                " FROM webhook_deliveries WHERE id = ?",
                (at, status_code, duration_ms, error, delivery_id),
            )
            if not delivered and next_attempt_at is not None:
                await tx.execute(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1,"
                    " next_attempt_at = ?, last_error = ?, claimed_by = NULL,"
                    " claimed_until = NULL WHERE id = ? AND status = 'pending'",
                    (next_attempt_at, error, delivery_id),
                )
                return
            await tx.execute(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, status = ?,"
                " last_error = ?, finished_at = ?, claimed_by = NULL, claimed_until = NULL"
                " WHERE id = ? AND status = 'pending'",
                (DELIVERED if delivered else FAILED, error, at, delivery_id),
            )

    async def fail_delivery(self, delivery_id: str, now: int, reason: str) -> bool:
        """End a pending delivery without an attempt (its webhook is gone or disabled)."""
        return await self.db.write_statement(
            "UPDATE webhook_deliveries SET status = 'failed', last_error = ?,"
            " finished_at = ?, claimed_by = NULL, claimed_until = NULL"
            " WHERE id = ? AND status = 'pending'",
            (reason, now, delivery_id),
        ) == 1

    async def release_webhook_claims(self, worker: str | None = None) -> int:
        """Give back delivery claims (all, or one worker's) so nothing waits for a lease."""
        sql = "UPDATE webhook_deliveries SET claimed_by = NULL, claimed_until = NULL WHERE "
        if worker is None:
            return await self.db.write_statement(sql + "claimed_by IS NOT NULL")
        return await self.db.write_statement(sql + "claimed_by = ?", (worker,))

    async def next_delivery_due(self) -> int | None:
        """When the earliest pending delivery is due (for the dispatcher's sleep)."""
        row = await self.db.fetchone(
            "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'"
        )
        return row[0] if row else None

    async def get_delivery(self, delivery_id: str) -> DeliveryRecord | None:
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM webhook_deliveries WHERE id = ?", (delivery_id,)
        )
        return _row(row) if row else None

    async def deliveries_of_event(self, event_id: str) -> list[DeliveryRecord]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM webhook_deliveries WHERE event_id = ?"
            " ORDER BY created_at, id",
            (event_id,),
        )
        return [_row(r) for r in rows]

    async def webhook_attempts(self, delivery_id: str) -> list[WebhookAttempt]:
        rows = await self.db.fetchall(
            "SELECT delivery_id, attempt, at, status_code, duration_ms, error"
            " FROM webhook_attempts WHERE delivery_id = ? ORDER BY id",
            (delivery_id,),
        )
        return [WebhookAttempt(*tuple(r)) for r in rows]



_COLUMNS = (
    "id, event_id, project_id, webhook_id, event_type, status, attempts, next_attempt_at,"
    " created_at, finished_at, last_error, body"
)


def _row(row: Row) -> DeliveryRecord:
    return DeliveryRecord(*tuple(row))
