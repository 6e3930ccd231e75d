"""Promotion of observations to click events: the claim, and the event written together
with its webhook deliveries (the context the classifier reads is store/context.py)
(docs/classification.md, docs/webhooks.md); and reads of the events.

Observations of one message are promoted in click order: an observation is claimed only
when every earlier pending observation of its message is due and free, so it is taken in
the same claim (and promoted first) or not at all. ``first_click`` therefore only ever
looks at events already written."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from store.backend import Database, Dialect, Row, Tx
from store.records import Observation
from store.webhooks import NewDelivery, insert_deliveries

# The link index of an open (a request for a copy's open pixel, docs/opens.md): its
# observation and its event name no link, and no real link has a negative index.
OPEN_LINK_INDEX = -1


@dataclass(frozen=True)
class EventRecord:
    id: str
    observation_id: int
    message_id: str
    project_id: str
    link_index: int
    destination: str
    clicked_at: int
    classification: str
    probability: int
    machine: bool
    counts_for_metrics: bool
    first_click: bool
    proxy_type: str | None
    reason_codes: tuple[str, ...]
    rules: tuple[str, ...]
    rules_version: str
    device_type: str | None
    client_type: str | None
    client_name: str | None
    user_agent: str | None
    created_at: int

    @property
    def opened(self) -> bool:
        """An open event (``clicked_at`` is when it was opened, ``first_click`` says
        ``first_open``)."""
        return self.link_index == OPEN_LINK_INDEX


class HitRecord(NamedTuple):
    """Another observation of a message, as classification context. A named tuple, as
    ``Observation``: promotion makes about ten for every observation it classifies."""

    observation_id: int
    at: int
    link_index: int
    addr_hash: str
    user_agent: str
    honeypot: bool


@dataclass(frozen=True)
class EarlierClicks:
    """What clicks a message had before a given one."""

    any: bool
    human: bool  # human-countable (counts_for_metrics)


@dataclass(frozen=True)
class Promoted:
    """The outcome of one observation's promotion: its event and the event's deliveries,
    or no event at all (a honeypot hit)."""

    observation_id: int
    event: EventRecord | None = None
    deliveries: Sequence[NewDelivery] = ()



class EventStore:
    db: Database

    async def claim_due_observations(
        self, worker: str, now: int, lease_us: int, limit: int
    ) -> list[Observation]:
        """Atomically take up to ``limit`` due observations, oldest click first (see the
        module docstring for the order within a message)."""
        dialect = self.db.dialect

        async def claim(tx: Tx) -> list[Row]:
            lock = dialect.serialize("observations")
            if lock:  # claimers on other nodes: see the order rule in the module docstring
                await tx.execute(lock)
            return await tx.fetchall(_claim(dialect), (worker, now + lease_us, now, limit))

        rows = await self.db.write(claim)
        return sorted((_observation(r) for r in rows), key=lambda o: (o.at, o.id or 0))

    async def release_observation_claims(self, worker: str | None = None) -> int:
        sql = ("UPDATE observations SET claimed_by = NULL, claimed_until = NULL"
               " WHERE state = 'pending' AND ")
        if worker is None:
            return await self.db.write_statement(sql + "claimed_by IS NOT NULL")
        return await self.db.write_statement(sql + "claimed_by = ?", (worker,))

    async def next_observation_due(self) -> int | None:
        row = await self.db.fetchone(
            "SELECT MIN(promote_after) FROM observations WHERE state = 'pending'"
        )
        return row[0] if row else None

    async def record_promotions(self, worker: str, promoted: Sequence[Promoted]) -> set[int]:
        """In one transaction, for every observation this worker still holds: mark it done,
        and write its event and the event's deliveries. The ids written are returned; an
        observation whose claim was lost (its lease lapsed and another worker took it) is
        left alone."""
        if not promoted:
            return set()
        ids = json.dumps([p.observation_id for p in promoted])

        mark_done = _mark_done(self.db.dialect)

        async def write(tx: Tx) -> set[int]:
            written = {row[0] for row in await tx.fetchall(mark_done, (ids, worker))}
            kept = [p for p in promoted if p.observation_id in written]
            await tx.executemany(
                f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ({', '.join('?' * 21)})",
                [_event_values(p.event) for p in kept if p.event is not None])
            await insert_deliveries(tx, [d for p in kept for d in p.deliveries])
            return written

        return await self.db.write(write)

    async def get_event(self, event_id: str) -> EventRecord | None:
        row = await self.db.fetchone(f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ?",
                                     (event_id,))
        return _event(row) if row else None

    async def list_message_events(
        self,
        message_id: str,
        *,
        include_machine: bool = False,
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> list[EventRecord]:
        """A message's events in click order. ``after`` is the (clicked_at, observation_id)
        of the last event of the previous page."""
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE message_id = ?"
        params: list[object] = [message_id]
        if not include_machine:
            sql += " AND machine = 0"
        if after is not None:
            sql += " AND (clicked_at, observation_id) > (?, ?)"
            params += list(after)
        rows = await self.db.fetchall(sql + " ORDER BY clicked_at, observation_id LIMIT ?",
                                      [*params, limit])
        return [_event(r) for r in rows]


OBSERVATION_COLUMNS = (
    "id, message_id, link_index, destination, project_sid, at, method, user_agent, headers,"
    " network, addr_hash, promote_after, state"
)


def _mark_done(dialect: Dialect) -> str:
    """The observations of ``?1`` (a JSON array of ids) that worker ``?2`` still holds,
    marked done; their ids returned. By their keys: through observations_due (state =
    'pending') SQLite walked every pending observation, the whole backlog, for each
    batch (docs/performance.md)."""
    return (f"UPDATE observations{dialect.not_indexed()} SET state = 'done',"
            " claimed_by = NULL, claimed_until = NULL"
            f" WHERE id IN ({dialect.json_values('?', 'INTEGER')})"
            " AND state = 'pending' AND claimed_by = ? RETURNING id")


def _claim(dialect: Dialect) -> str:
    """The claim: ?1 the worker, ?2 its lease's end, ?3 now, ?4 the limit.

    INDEXED BY: without statistics SQLite would take every due row by observations_due
    and sort them, a cost that grows with the backlog; walking observations_pending in
    click order stops at the limit. The walk ends at the click of the observation due
    last, so the ones still settling are not visited (after a reload that shortened
    settle_seconds, one may wait a round). On PostgreSQL claims are taken one at a time
    (``Dialect.serialize``): a claim running beside another would see an earlier
    observation of a message as free while the other holds it, and take a later one."""
    return (
        "UPDATE observations SET claimed_by = ?1, claimed_until = ?2"
        " WHERE id IN (SELECT o.id FROM observations o"
        f"{dialect.indexed_by('observations_pending')}"
        " WHERE o.state = 'pending' AND o.promote_after <= ?3"
        " AND o.at <= (SELECT d.at FROM observations d WHERE d.state = 'pending'"
        "  AND d.promote_after <= ?3 ORDER BY d.promote_after DESC LIMIT 1)"
        " AND (o.claimed_until IS NULL OR o.claimed_until < ?3)"
        " AND NOT EXISTS (SELECT 1 FROM observations e"
        "  WHERE e.message_id = o.message_id AND e.state = 'pending'"
        "  AND (e.at < o.at OR (e.at = o.at AND e.id < o.id))"
        "  AND (e.promote_after > ?3 OR e.claimed_until >= ?3))"
        " ORDER BY o.at, o.id LIMIT ?4)"
        f" RETURNING {OBSERVATION_COLUMNS}"
    )
EVENT_COLUMNS = (
    "id, observation_id, message_id, project_id, link_index, destination, clicked_at,"
    " classification, probability, machine, counts_for_metrics, first_click, proxy_type,"
    " reason_codes, rules, rules_version, device_type, client_type, client_name, user_agent,"
    " created_at"
)


def _observation(row: Row) -> Observation:
    return Observation(
        message_id=row["message_id"], link_index=row["link_index"],
        destination=row["destination"], project_sid=row["project_sid"], at=row["at"],
        method=row["method"], user_agent=row["user_agent"],
        headers=json.loads(row["headers"] or "{}"), network=row["network"],
        addr_hash=row["addr_hash"], promote_after=row["promote_after"], id=row["id"],
        state=row["state"],
    )


def _event_values(e: EventRecord) -> tuple[object, ...]:
    return (
        e.id, e.observation_id, e.message_id, e.project_id, e.link_index, e.destination,
        e.clicked_at, e.classification, e.probability, int(e.machine),
        int(e.counts_for_metrics), int(e.first_click), e.proxy_type,
        json.dumps(list(e.reason_codes)), json.dumps(list(e.rules)), e.rules_version,
        e.device_type, e.client_type, e.client_name, e.user_agent, e.created_at,
    )


def _event(row: Row) -> EventRecord:
    v = list(tuple(row))
    for i in (9, 10, 11):
        v[i] = bool(v[i])
    v[13], v[14] = tuple(json.loads(v[13])), tuple(json.loads(v[14]))
    return EventRecord(*v)
