"""Idempotency keys of the send API: claimed before a send, completed with its answer.

A claim is all or nothing: the keys of one request (its ``Idempotency-Key`` and the
per-email keys of a batch) are checked and taken in one transaction, so that two
concurrent requests can never both send under the same key (docs/api.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from store.db import Database, Row

IN_FLIGHT, DONE = "in_flight", "done"
NEW, MISMATCH = "new", "mismatch"


@dataclass(frozen=True)
class KeyClaim:
    scope: str  # which kind of request the key belongs to: send | batch | batch-item
    key: str
    body_hash: str


@dataclass(frozen=True)
class KeyState:
    """What a claim found: ``new`` (taken now), ``done`` (answered before: ``response``
    holds the answer), ``in_flight`` (another request holds it) or ``mismatch`` (used
    before with another body)."""

    state: str
    response: str | None = None


class IdempotencyStore:
    db: Database

    async def claim_idempotency_keys(
        self, project_id: str, claims: Sequence[KeyClaim], now: int, ttl_us: int
    ) -> list[KeyState]:
        """Check every key and, only if none is in flight or used with another body, take
        the unknown ones (``in_flight``). Keys older than ``ttl_us`` are forgotten first."""
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (now - ttl_us,))
            states: list[KeyState] = []
            for claim in claims:
                cur = await tx.execute(
                    "SELECT body_hash, status, response FROM idempotency_keys"
                    " WHERE project_id = ? AND scope = ? AND key = ?",
                    (project_id, claim.scope, claim.key),
                )
                row = await cur.fetchone()
                states.append(_state(claim, row))
            if any(s.state in (IN_FLIGHT, MISMATCH) for s in states):
                return states
            await tx.executemany(
                "INSERT INTO idempotency_keys (project_id, scope, key, body_hash, status,"
                " created_at) VALUES (?, ?, ?, ?, 'in_flight', ?)",
                [
                    (project_id, c.scope, c.key, c.body_hash, now)
                    for c, s in zip(claims, states, strict=True)
                    if s.state == NEW
                ],
            )
            return states

    async def complete_idempotency_key(
        self, project_id: str, scope: str, key: str, response: str
    ) -> None:
        """Record the answer of a claimed key: later requests with it get this answer."""
        async with self.db.transaction() as tx:
            await tx.execute(
                "UPDATE idempotency_keys SET status = 'done', response = ?"
                " WHERE project_id = ? AND scope = ? AND key = ? AND status = 'in_flight'",
                (response, project_id, scope, key),
            )

    async def release_idempotency_keys(
        self, project_id: str, keys: Sequence[tuple[str, str]]
    ) -> None:
        """Give back claimed keys whose request failed, so that a retry can use them."""
        async with self.db.transaction() as tx:
            await tx.executemany(
                "DELETE FROM idempotency_keys"
                " WHERE project_id = ? AND scope = ? AND key = ? AND status = 'in_flight'",
                [(project_id, scope, key) for scope, key in keys],
            )

    async def release_unfinished_keys(self) -> int:
        """Give back every key still in flight: at start, when no request is being
        taken, a key in flight belongs to a request that died with the previous process
        before its mail was spooled (an answered key is completed in the spool's own
        transaction). How many went."""
        async with self.db.transaction() as tx:
            cur = await tx.execute("DELETE FROM idempotency_keys WHERE status = 'in_flight'")
            return cur.rowcount


def _state(claim: KeyClaim, row: Row | None) -> KeyState:
    if row is None:
        return KeyState(NEW)
    body_hash, status, response = tuple(row)
    if body_hash != claim.body_hash:
        return KeyState(MISMATCH)
    if status == IN_FLIGHT:
        return KeyState(IN_FLIGHT)
    return KeyState(DONE, response)
