"""The spool: accepted mail per recipient, its links, and its delivery attempts."""

from __future__ import annotations

import json
from collections.abc import Sequence

from store.db import Database, Row
from store.records import (
    AnsweredKey,
    DeliveryAttempt,
    LinkRecord,
    MessageInfo,
    NewMessage,
    SpooledMessage,
    SpoolSummary,
)

DELIVERED, TEMPORARY, PERMANENT = "delivered", "temporary", "permanent"


class MailStore:
    db: Database

    async def spool_messages(
        self, messages: Sequence[NewMessage], answered_key: AnsweredKey | None = None
    ) -> None:
        """Write every copy of one submission in one transaction; on return it is on disk.
        ``answered_key`` completes a claimed idempotency key in the same transaction, so a
        crash cannot leave the mail spooled with its key still in flight."""
        async with self.db.transaction() as tx:
            if answered_key is not None:
                await tx.execute(
                    "UPDATE idempotency_keys SET status = 'done', response = ?"
                    " WHERE project_id = ? AND scope = ? AND key = ? AND status = 'in_flight'",
                    (answered_key.response, answered_key.project_id, answered_key.scope,
                     answered_key.key),
                )
            await tx.executemany(
                "INSERT INTO messages (id, submission_id, project_id, route_id, mail_from, "
                "rcpt_to, subject, tag, metadata, track_clicks, created_at, status, body, "
                "next_attempt_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,'queued',?,?)",
                [
                    (m.id, m.submission_id, m.project_id, m.route_id, m.mail_from, m.rcpt_to,
                     m.subject, m.tag, json.dumps(m.metadata), int(m.track_clicks),
                     m.created_at, m.body, m.created_at)
                    for m in messages
                ],
            )
            await tx.executemany(
                "INSERT INTO links (message_id, link_index, destination, anchor_text, honeypot) "
                "VALUES (?,?,?,?,?)",
                [
                    (m.id, link.index, link.destination, link.anchor_text, int(link.honeypot))
                    for m in messages
                    for link in m.links
                ],
            )

    async def claim_due_messages(
        self, worker: str, now: int, lease_us: int, limit: int
    ) -> list[SpooledMessage]:
        """Atomically take up to ``limit`` queued copies that are due and not claimed by a
        live worker; the claim lapses after ``lease_us`` if the worker dies."""
        async with self.db.transaction() as tx:
            cur = await tx.execute(
                "UPDATE messages SET claimed_by = ?, claimed_until = ? WHERE id IN ("
                " SELECT id FROM messages WHERE status = 'queued' AND next_attempt_at <= ?"
                " AND (claimed_until IS NULL OR claimed_until < ?)"
                " ORDER BY next_attempt_at LIMIT ?)"
                " RETURNING id, project_id, mail_from, rcpt_to, body, attempts, created_at",
                (worker, now + lease_us, now, now, limit),
            )
            rows = await cur.fetchall()
        return [SpooledMessage(*tuple(r)) for r in rows]

    async def release_claims(self, worker: str | None = None) -> int:
        """Give back claims (all of them, or one worker's): after a restart nothing that
        was claimed by the dead process waits for its lease to lapse."""
        async with self.db.transaction() as tx:
            if worker is None:
                cur = await tx.execute(
                    "UPDATE messages SET claimed_by = NULL, claimed_until = NULL "
                    "WHERE claimed_by IS NOT NULL"
                )
            else:
                cur = await tx.execute(
                    "UPDATE messages SET claimed_by = NULL, claimed_until = NULL "
                    "WHERE claimed_by = ?",
                    (worker,),
                )
            return cur.rowcount

    async def next_message_due(self) -> int | None:
        """When the earliest queued copy is due (for the delivery worker's sleep)."""
        row = await self.db.fetchone(
            "SELECT MIN(next_attempt_at) FROM messages WHERE status = 'queued'"
        )
        return row[0] if row else None

    async def record_delivery(
        self,
        message_id: str,
        *,
        outcome: str,
        at: int,
        duration_ms: int,
        code: int | None = None,
        detail: str | None = None,
        next_attempt_at: int | None = None,
    ) -> None:
        """Record one attempt and its consequence: delivered and permanent failures end the
        copy (its body is dropped); a temporary failure requeues it for ``next_attempt_at``."""
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO delivery_attempts (message_id, attempt, at, outcome, code, detail,"
                " duration_ms) SELECT id, attempts + 1, ?, ?, ?, ?, ? FROM messages WHERE id = ?",
                (at, outcome, code, detail, duration_ms, message_id),
            )
            if outcome == TEMPORARY and next_attempt_at is not None:
                await tx.execute(
                    "UPDATE messages SET attempts = attempts + 1, next_attempt_at = ?,"
                    " last_error = ?, claimed_by = NULL, claimed_until = NULL WHERE id = ?",
                    (next_attempt_at, detail, message_id),
                )
                return
            status = "delivered" if outcome == DELIVERED else "failed"
            await tx.execute(
                "UPDATE messages SET attempts = attempts + 1, status = ?, body = NULL,"
                " last_error = ?, finished_at = ?, claimed_by = NULL, claimed_until = NULL"
                " WHERE id = ?",
                (status, None if outcome == DELIVERED else detail, at, message_id),
            )

    async def requeue_message(self, message_id: str, now: int) -> bool:
        """Make a queued copy due now (the operator's ``retry``)."""
        async with self.db.transaction() as tx:
            cur = await tx.execute(
                "UPDATE messages SET next_attempt_at = ? WHERE id = ? AND status = 'queued'",
                (now, message_id),
            )
            return cur.rowcount == 1

    async def drop_message(self, message_id: str, now: int, reason: str) -> bool:
        """Give up on a queued copy (the operator's ``drop``); recorded as a failure."""
        async with self.db.transaction() as tx:
            cur = await tx.execute(
                "UPDATE messages SET status = 'failed', body = NULL, last_error = ?,"
                " finished_at = ? WHERE id = ? AND status = 'queued'",
                (reason, now, message_id),
            )
            return cur.rowcount == 1

    async def get_message(self, message_id: str) -> MessageInfo | None:
        row = await self.db.fetchone(f"SELECT {_INFO_COLUMNS} FROM messages WHERE id = ?",
                                     (message_id,))
        return _message_info(row) if row else None

    async def list_queued(self, limit: int = 100) -> list[MessageInfo]:
        rows = await self.db.fetchall(
            f"SELECT {_INFO_COLUMNS} FROM messages WHERE status = 'queued'"
            " ORDER BY created_at LIMIT ?",
            (limit,),
        )
        return [_message_info(r) for r in rows]

    async def get_links(self, message_id: str) -> list[LinkRecord]:
        rows = await self.db.fetchall(
            "SELECT link_index, destination, anchor_text, honeypot FROM links"
            " WHERE message_id = ? ORDER BY link_index",
            (message_id,),
        )
        return [LinkRecord(r[0], r[1], r[2], bool(r[3])) for r in rows]

    async def delivery_attempts(self, message_id: str) -> list[DeliveryAttempt]:
        rows = await self.db.fetchall(
            "SELECT attempt, at, outcome, code, detail, duration_ms FROM delivery_attempts"
            " WHERE message_id = ? ORDER BY id",
            (message_id,),
        )
        return [DeliveryAttempt(*tuple(r)) for r in rows]

    async def spool_summary(self, now: int) -> SpoolSummary:
        row = await self.db.fetchone(
            "SELECT"
            " COUNT(*) FILTER (WHERE status = 'queued'),"
            " COUNT(*) FILTER (WHERE status = 'queued' AND claimed_until >= ?),"
            " MIN(created_at) FILTER (WHERE status = 'queued'),"
            " COUNT(*) FILTER (WHERE status = 'delivered'),"
            " COUNT(*) FILTER (WHERE status = 'failed')"
            " FROM messages",
            (now,),
        )
        assert row is not None
        return SpoolSummary(row[0], row[1], row[2], row[3], row[4])


_INFO_COLUMNS = (
    "id, submission_id, project_id, route_id, mail_from, rcpt_to, subject, tag, metadata,"
    " track_clicks, created_at, status, attempts, next_attempt_at, last_error, finished_at"
)


def _message_info(row: Row) -> MessageInfo:
    values = list(tuple(row))
    values[8] = json.loads(values[8] or "{}")
    values[9] = bool(values[9])
    return MessageInfo(*values)
