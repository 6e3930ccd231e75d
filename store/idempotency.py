"""Idempotency keys of the send API: claimed before a send, completed with its answer.

A claim is all or nothing: the keys of one request (its ``Idempotency-Key`` and the
per-email keys of a batch) are checked and taken in one transaction, so that two
concurrent requests can never both send under the same key (docs/api.md). On a database
shared by several nodes, two claims of one key at the same moment meet at the table's
primary key: the second waits for the first to commit, finds the key taken and is told
so (docs/deployment.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from store.backend import Database, Row, Tx

IN_FLIGHT, DONE = "in_flight", "done"
# A key in flight this long belongs to a request that died with its node (a request
# holds its key for the seconds its mail takes to read and spool): the key is free again.
# On one SQLite file such keys are given back when the server starts instead.
IN_FLIGHT_LEASE_US = 10 * 60 * 1_000_000
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
        the unknown ones (``in_flight``). Keys older than ``ttl_us``, and keys in flight
        for longer than ``IN_FLIGHT_LEASE_US``, are forgotten first."""
        async def claim(tx: Tx) -> list[KeyState]:
            await tx.execute("DELETE FROM idempotency_keys WHERE created_at < ? OR"
                             " (status = 'in_flight' AND created_at < ?)",
                             (now - ttl_us, now - IN_FLIGHT_LEASE_US))
            states = [_state(c, await tx.fetchone(
                "SELECT body_hash, status, response FROM idempotency_keys"
                " WHERE project_id = ? AND scope = ? AND key = ?",
                (project_id, c.scope, c.key))) for c in claims]
            if any(s.state in (IN_FLIGHT, MISMATCH) for s in states):
                return states
            for c, s in zip(claims, states, strict=True):
                if s.state == NEW and not await tx.execute(
                        "INSERT INTO idempotency_keys (project_id, scope, key, body_hash,"
                        " status, created_at) VALUES (?, ?, ?, ?, 'in_flight', ?)"
                        " ON CONFLICT DO NOTHING",
                        (project_id, c.scope, c.key, c.body_hash, now)):
                    raise _Raced  # another node took it since the SELECT: undo, read again
            return states

        while True:
            try:
                return await self.db.write(claim)
            except _Raced:
                continue

    async def complete_idempotency_key(
        self, project_id: str, scope: str, key: str, response: str
    ) -> None:
        """Record the answer of a claimed key: later requests with it get this answer."""
        await self.db.write_statement(
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
        return await self.db.write_statement(
            "DELETE FROM idempotency_keys WHERE status = 'in_flight'")


class _Raced(Exception):
    """A key inserted by another transaction between a claim's read and its insert."""


def _state(claim: KeyClaim, row: Row | None) -> KeyState:
    if row is None:
        return KeyState(NEW)
    body_hash, status, response = tuple(row)
    if body_hash != claim.body_hash:
        return KeyState(MISMATCH)
    if status == IN_FLIGHT:
        return KeyState(IN_FLIGHT)
    return KeyState(DONE, response)
