"""The spool: accepted mail per recipient, its links, and its delivery attempts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from store.backend import Database, Row, Tx
from store.bodies import (
    INLINE_BODY_BYTES,
    BodyFiles,
    body_size,
    fills_size,
    joined,
    pack_fills,
    pack_lengths,
    split_pieces,
    unpack_fills,
    unpack_lengths,
)
from store.message_info import INFO_COLUMNS, message_info
from store.records import (
    AnsweredKey,
    DeliveryAttempt,
    LinkRecord,
    MessageInfo,
    NewMessage,
    SharedBody,
    SpooledMessage,
    SpoolSummary,
)
from store.webhooks import NewDelivery, insert_deliveries

DELIVERED, TEMPORARY, PERMANENT = "delivered", "temporary", "permanent"
SPOOL_CHANNEL = "spool"  # notified when copies are spooled


class MailStore:
    db: Database

    async def spool_messages(
        self, messages: Sequence[NewMessage], answered_key: AnsweredKey | None = None
    ) -> None:
        """Write every copy of one submission in one transaction; on return it is on disk.
        ``answered_key`` completes a claimed idempotency key in the same transaction, so a
        crash cannot leave the mail spooled with its key still in flight.

        Copies with a ``shared`` body: the body and their links once, and per copy its
        fills. A body that comes to more than INLINE_BODY_BYTES with the fills goes into a
        file first (unless whoever made it wrote it there), so that the transaction stays
        short; if the copies are not spooled the file is deleted again, or at the next
        start (``clean_spool``)."""
        shared = {m.shared.id: m.shared for m in messages if m.shared is not None}
        spans = {m.id: m.fills_span for m in messages if m.fills_span is not None}
        try:
            for body in list(shared.values()):
                copies = [m for m in messages if m.shared is not None and m.shared.id == body.id]
                if body.in_file or self.db.files_dir is None or (
                        body_size(body) + fills_size(m.fills for m in copies)
                        <= INLINE_BODY_BYTES):
                    continue
                written = await self._files().write(body.id, body.pieces,
                                                       [m.fills for m in copies])
                spans.update(zip((m.id for m in copies), written, strict=True))
                shared[body.id] = SharedBody(body.id, (), body.piece_lengths())
            bodies = list(shared.values())

            async def spool(tx: Tx) -> None:
                await _insert(tx, messages, bodies, spans)
                await _complete_key(tx, answered_key)

            await self.db.write_grouped(spool)
        except BaseException:
            in_files = [body.id for body in shared.values() if body.in_file]
            with contextlib.suppress(Exception):  # the first failure is the one to tell
                await asyncio.shield(self.discard_bodies(in_files))
            raise

    async def clean_spool(self) -> int:
        """Remove the shared bodies no copy needs, and files that belong to no
        body (left by a crash while spooling or delivering). At start, when nothing is
        being spooled; how many bodies went."""
        gone = await self.db.write_statement(f"DELETE FROM bodies WHERE {BODY_UNNEEDED}")
        if self.db.files_dir is not None:
            rows = await self.db.fetchall("SELECT id FROM bodies WHERE data IS NULL")
            await self._files().keep_only({r["id"] for r in rows})
        return gone

    def _files(self) -> BodyFiles:
        return BodyFiles.beside(self.db.files_dir)

    def body_file(self, body_id: str) -> Path | None:
        """Where a shared body is kept when it is too large for the database; a caller
        that writes one there (store.bodies.write_body) spools it with ``in_file``. None
        where every body is kept in the database (PostgreSQL: every node reads it)."""
        return None if self.db.files_dir is None else self._files().path(body_id)

    async def discard_bodies(self, body_ids: Sequence[str]) -> None:
        """Delete body files written for a submission that is not spooled after all."""
        if self.db.files_dir is not None and body_ids:
            await self._files().delete(body_ids)

    async def claim_due_messages(
        self, worker: str, now: int, lease_us: int, limit: int
    ) -> list[SpooledMessage]:
        """Atomically take up to ``limit`` queued copies that are due and not claimed by a
        live worker; the claim lapses after ``lease_us`` if the worker dies."""
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                "UPDATE messages SET claimed_by = ?, claimed_until = ? WHERE id IN ("
                " SELECT id FROM messages WHERE status = 'queued' AND next_attempt_at <= ?"
                " AND (claimed_until IS NULL OR claimed_until < ?)"
                f" ORDER BY next_attempt_at LIMIT ?{self.db.dialect.skip_locked})"
                " RETURNING id, project_id, mail_from, rcpt_to, body, attempts, created_at,"
                " body_id, fills, fills_at, fills_size, route_id, subject, tag, metadata,"
                " notice_of, mail_params",
                (worker, now + lease_us, now, now, limit),
            )
        pieces = {body_id: await self._pieces(body_id)
                  for body_id in {r["body_id"] for r in rows if r["body_id"] is not None}}
        out = []
        for r in rows:
            body = await self._copy_bytes(r, pieces)
            out.append(SpooledMessage(
                r["id"], r["project_id"], r["mail_from"], r["rcpt_to"], body, r["attempts"],
                r["created_at"], r["route_id"], r["subject"], r["tag"],
                json.loads(r["metadata"] or "{}"), r["notice_of"],
                tuple(r["mail_params"].split())))
        return out

    async def message_source(self, message_id: str) -> bytes | None:
        """A copy as it went (or goes) to the upstream, until retention purges it; None
        for a copy whose content is no longer kept."""
        row = await self.db.fetchone(
            "SELECT body, body_id, fills, fills_at, fills_size FROM messages WHERE id = ?",
            (message_id,))
        if row is None or (row["body"] is None and row["body_id"] is None):
            return None
        if row["body_id"] is not None and await self.db.fetchone(
                "SELECT 1 FROM bodies WHERE id = ?", (row["body_id"],)) is None:
            return None  # finished before shared bodies were kept until retention
        pieces = {} if row["body_id"] is None else {row["body_id"]: await self._pieces(
            row["body_id"])}
        return await self._copy_bytes(row, pieces)

    async def _copy_bytes(self, row: Row, pieces: dict[str, list[bytes]]) -> bytes:
        """A copy's bytes: its own body, or its shared body's pieces with its fills."""
        if row["body_id"] is None:
            body: bytes = row["body"]
            return body
        fills = unpack_fills(row["fills"])
        if row["fills_at"] is not None:
            fills = await self._files().read_fills(row["body_id"],
                                                      (row["fills_at"], row["fills_size"]))
        return await joined(pieces[row["body_id"]], fills)

    async def _pieces(self, body_id: str) -> list[bytes]:
        row = await self.db.fetchone("SELECT pieces, data FROM bodies WHERE id = ?", (body_id,))
        if row is None:
            raise LookupError(f"the shared body {body_id} is missing")
        lengths = unpack_lengths(row["pieces"])
        if row["data"] is None:
            return await self._files().read(body_id, lengths)
        return split_pieces(row["data"], lengths)

    async def release_claims(self, worker: str | None = None) -> int:
        """Give back claims (all of them, or one worker's): after a restart nothing that
        was claimed by the dead process waits for its lease to lapse."""
        if worker is None:
            return await self.db.write_statement(
                "UPDATE messages SET claimed_by = NULL, claimed_until = NULL "
                "WHERE claimed_by IS NOT NULL"
            )
        return await self.db.write_statement(
            "UPDATE messages SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = ?",
            (worker,),
        )

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
        notice: NewMessage | None = None,
        deliveries: Sequence[NewDelivery] = (),
    ) -> None:
        """Record one attempt and its consequence: delivered and permanent failures end the
        copy (its content stays, for the API, until retention purges it); a temporary failure
        requeues it for ``next_attempt_at``. In the same transaction: the ``notice`` of a
        permanent failure spooled (a delivery status notification), and the attempt's webhook
        ``deliveries`` put in the outbox. The records of attempts that end together share a
        commit (``write_grouped``)."""
        async def record(tx: Tx) -> None:
            await insert_deliveries(tx, deliveries)
            if notice is not None:
                await _insert(tx, [notice], (), {})
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
                "UPDATE messages SET attempts = attempts + 1, status = ?,"
                " last_error = ?, finished_at = ?, claimed_by = NULL,"
                " claimed_until = NULL WHERE id = ?",
                (status, None if outcome == DELIVERED else detail, at, message_id),
            )

        await self.db.write_grouped(record)

    async def requeue_message(self, message_id: str, now: int) -> bool:
        """Make a queued copy due now (the operator's ``retry``)."""
        return await self.db.write_statement(
            "UPDATE messages SET next_attempt_at = ? WHERE id = ? AND status = 'queued'",
            (now, message_id),
        ) == 1

    async def drop_message(self, message_id: str, now: int, reason: str) -> bool:
        """Give up on a queued copy (the operator's ``drop``); recorded as a failure."""
        return await self.db.write_statement(
            "UPDATE messages SET status = 'failed',"
            " last_error = ?, finished_at = ? WHERE id = ? AND status = 'queued'",
            (reason, now, message_id),
        ) == 1

    async def get_message(self, message_id: str) -> MessageInfo | None:
        row = await self.db.fetchone(f"SELECT {INFO_COLUMNS} FROM messages WHERE id = ?",
                                     (message_id,))
        return message_info(row) if row else None

    async def list_queued(self, limit: int = 100) -> list[MessageInfo]:
        rows = await self.db.fetchall(
            f"SELECT {INFO_COLUMNS} FROM messages WHERE status = 'queued'"
            " ORDER BY created_at LIMIT ?",
            (limit,),
        )
        return [message_info(r) for r in rows]

    async def get_links(self, message_id: str) -> list[LinkRecord]:
        rows = await self.db.fetchall(
            f"SELECT link_index, destination, anchor_text, honeypot FROM ({MESSAGE_LINKS}) l"
            " ORDER BY link_index",
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


# A submission written in steps: link rows, and bytes of copies' fills, in one step.
_INSERT_LINK = ("INSERT INTO links (message_id, link_index, destination, anchor_text, honeypot)"
                " VALUES (?,?,?,?,?)")
# The links of the message ?1, its own or its submission's (a copy of a shared body): the
# source of every query that reads a message's links (with ?1 the message id).
MESSAGE_LINKS = (
    "SELECT message_id, link_index, destination, anchor_text, honeypot FROM links"
    " WHERE message_id = ?1 UNION ALL"
    " SELECT m.id, s.link_index, s.destination, s.anchor_text, s.honeypot"
    " FROM messages m JOIN submission_links s ON s.submission_id = m.submission_id"
    " WHERE m.id = ?1 AND m.body_id IS NOT NULL"
)
# A shared body whose copies are all gone (purged by retention, store/retention.py): until
# then the API shows a copy's source (docs/api.md).
BODY_UNNEEDED = "NOT EXISTS (SELECT 1 FROM messages WHERE messages.body_id = bodies.id)"


async def _insert(
    tx: Tx, messages: Sequence[NewMessage], shared: Iterable[SharedBody],
    spans: dict[str, tuple[int, int]],
) -> None:
    await tx.executemany(
        "INSERT INTO bodies (id, pieces, data) VALUES (?,?,?)",
        [(b.id, pack_lengths(b.piece_lengths()), None if b.in_file else b"".join(b.pieces))
         for b in shared],
    )
    await tx.executemany(
        "INSERT INTO messages (id, submission_id, project_id, route_id, mail_from, rcpt_to,"
        " subject, tag, metadata, track_clicks, created_at, status, body, next_attempt_at,"
        " body_id, fills, fills_at, fills_size, notice_of, mail_params, from_name, rcpt_name,"
        " reply_to, track_opens) VALUES (?,?,?,?,?,?,?,?,?,?,?,'queued',?,?,?,?,?,?,?,?,?,?,?,?)",
        [_message_row(m, spans.get(m.id)) for m in messages],
    )
    await tx.executemany(_INSERT_LINK, [
        (m.id, link.index, link.destination, link.anchor_text, int(link.honeypot))
        for m in messages if m.shared is None for link in m.links
    ])
    first = {m.submission_id: m for m in reversed(messages) if m.shared is not None}
    await tx.executemany(
        "INSERT INTO submission_links (submission_id, link_index, destination, anchor_text,"
        " honeypot) VALUES (?,?,?,?,?)",
        [(m.submission_id, link.index, link.destination, link.anchor_text, int(link.honeypot))
         for m in first.values() for link in m.links],
    )
    await tx.notify(SPOOL_CHANNEL)


def _message_row(m: NewMessage, span: tuple[int, int] | None) -> tuple[object, ...]:
    fills = None if m.shared is None or span is not None else pack_fills(m.fills)
    return (m.id, m.submission_id, m.project_id, m.route_id, m.mail_from, m.rcpt_to, m.subject,
            m.tag, json.dumps(m.metadata), int(m.track_clicks), m.created_at,
            None if m.shared else m.body, m.created_at, m.shared.id if m.shared else None,
            fills, span[0] if span else None, span[1] if span else None, m.notice_of,
            " ".join(m.mail_params), m.names.from_name, m.names.rcpt_name,
            json.dumps(list(m.names.reply_to)) if m.names.reply_to else None,
            int(m.track_opens))


async def _complete_key(tx: Tx, answered: AnsweredKey | None) -> None:
    if answered is not None:
        await tx.execute(
            "UPDATE idempotency_keys SET status = 'done', response = ?"
            " WHERE project_id = ? AND scope = ? AND key = ? AND status = 'in_flight'",
            (answered.response, answered.project_id, answered.scope, answered.key),
        )
