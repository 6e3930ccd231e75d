"""Data retention (README.md): finished work older than the cutoff is deleted in small
batches, so that a purge never holds the write lock long enough to delay a click's
commit. Unfinished work (a queued copy, a pending observation or delivery) is never
purged, however old."""

from __future__ import annotations

from dataclasses import dataclass

from store.backend import Database
from store.bodies import BodyFiles
from store.mail import BODY_UNNEEDED

PURGE_BATCH = 500  # rows per transaction

# What is deleted, in an order that leaves no dangling reference: links and delivery
# attempts go with their message, webhook attempts with their delivery (ON DELETE CASCADE);
# a pending delivery of a purged event keeps its body and loses only the reference.
_PURGES = (  # (table, its key, what is purged: older than ?, a cutoff, where it says)
    ("webhook_deliveries", "id", "status IN ('delivered', 'failed') AND finished_at < ?"),
    ("events", "id", "created_at < ?"),
    ("observations", "id", "state = 'done' AND at < ?"),
    ("messages", "id", "status IN ('delivered', 'failed') AND finished_at < ?"),
    # The links of a shared body (store/mail.py) go with the last of its copies.
    ("submission_links", "(submission_id, link_index)", "NOT EXISTS (SELECT 1 FROM messages"
     " WHERE messages.submission_id = submission_links.submission_id)"),
    ("idempotency_keys", "(project_id, scope, key)", "created_at < ?"),
)
# A shared body goes with the last of its copies (the API shows a copy's source until
# then), and its file once the row's deletion is committed.
_BODIES = (f"DELETE FROM bodies WHERE id IN (SELECT id FROM bodies WHERE {BODY_UNNEEDED}"
           " LIMIT ?) RETURNING id, data IS NULL")


@dataclass(frozen=True)
class Purged:
    webhook_deliveries: int = 0
    events: int = 0
    observations: int = 0
    messages: int = 0
    submission_links: int = 0
    idempotency_keys: int = 0
    bodies: int = 0

    @property
    def total(self) -> int:
        return (self.webhook_deliveries + self.events + self.observations + self.messages
                + self.submission_links + self.idempotency_keys + self.bodies)


class RetentionStore:
    db: Database

    async def purge_expired(self, cutoff: int, keys_cutoff: int) -> Purged:
        """Delete finished rows older than ``cutoff`` and idempotency keys written before
        ``keys_cutoff`` (both µs); how many of each went."""
        counts: dict[str, int] = {}
        for table, key, condition in _PURGES:
            counts[table] = 0
            older_than = keys_cutoff if table == "idempotency_keys" else cutoff
            while True:
                deleted = await self._purge_batch(table, key, condition, older_than)
                counts[table] += deleted
                if deleted < PURGE_BATCH:
                    break
        counts["bodies"] = await self._purge_bodies()
        return Purged(**counts)

    async def _purge_bodies(self) -> int:
        gone = 0
        while True:
            rows = await self.db.write(lambda tx: tx.fetchall(_BODIES, (PURGE_BATCH,)))
            if self.db.files_dir is not None:
                await BodyFiles.beside(self.db.files_dir).delete(row[0] for row in rows if row[1])
            gone += len(rows)
            if len(rows) < PURGE_BATCH:
                return gone

    async def _purge_batch(
        self, table: str, key: str, condition: str, older_than: int
    ) -> int:
        cutoff = (older_than,) if "?" in condition else ()
        return await self.db.write_statement(
            f"DELETE FROM {table} WHERE {key} IN"
            f" (SELECT {key.strip('()')} FROM {table} WHERE {condition} LIMIT ?)",
            (*cutoff, PURGE_BATCH),
        )
