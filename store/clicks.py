"""Observations: what the tracker stores of each click before it answers (DESIGN §5).

The tracker writes them in batches (group commit: many concurrent clicks, one transaction,
one fsync); promotion reads them by message."""

from __future__ import annotations

import json
from collections.abc import Sequence

from store.db import Database, Row
from store.records import Observation

# SQLite binds at most 32766 parameters per statement; 11 per row.
ROWS_PER_STATEMENT = 500
_COLUMNS = (
    "id, message_id, link_index, destination, project_sid, at, method, user_agent, headers,"
    " network, addr_hash, promote_after, state"
)
_quote = json.encoder.encode_basestring  # a str as a JSON string, non-ASCII kept


class ClickStore:
    db: Database

    async def record_observations(self, batch: Sequence[Observation]) -> None:
        """Write a batch atomically; on return every observation is on disk. Up to
        ``ROWS_PER_STATEMENT`` rows go in one multi-row INSERT, a transaction on its own:
        one trip to the database thread and one fsync for the whole batch."""
        if not batch:
            return
        if len(batch) <= ROWS_PER_STATEMENT:
            await self.db.write_statement(_insert(len(batch)), _values(batch))
            return
        async with self.db.transaction() as tx:
            for start in range(0, len(batch), ROWS_PER_STATEMENT):
                chunk = batch[start : start + ROWS_PER_STATEMENT]
                await tx.execute(_insert(len(chunk)), _values(chunk))

    async def get_observations(self, message_id: str) -> list[Observation]:
        """A message's observations in click order."""
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM observations WHERE message_id = ? ORDER BY at, id",
            (message_id,),
        )
        return [_observation(r) for r in rows]

    async def count_observations(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) FROM observations")
        return int(row[0]) if row else 0


def _values(batch: Sequence[Observation]) -> list[object]:
    """The parameters of a multi-row INSERT, row after row (the column order of
    ``_insert``); the headers as a JSON object."""
    values: list[object] = []
    for o in batch:
        values += (o.message_id, o.link_index, o.destination, o.project_sid, o.at, o.method,
                   o.user_agent, _headers_json(o.headers), o.network, o.addr_hash,
                   o.promote_after)
    return values


def _headers_json(headers: dict[str, str]) -> str:
    """``json.dumps(headers, ensure_ascii=False)``, a flat object of strings, in half the
    time: it is written for every click."""
    return "{" + ", ".join([f"{_quote(k)}: {_quote(v)}" for k, v in headers.items()]) + "}"


def _insert(rows: int) -> str:
    return (
        "INSERT INTO observations (message_id, link_index, destination, project_sid, at,"
        " method, user_agent, headers, network, addr_hash, promote_after) VALUES "
        + ",".join(["(?,?,?,?,?,?,?,?,?,?,?)"] * rows)
    )


def _observation(row: Row) -> Observation:
    return Observation(
        message_id=row["message_id"],
        link_index=row["link_index"],
        destination=row["destination"],
        project_sid=row["project_sid"],
        at=row["at"],
        method=row["method"],
        user_agent=row["user_agent"],
        headers=json.loads(row["headers"] or "{}"),
        network=row["network"],
        addr_hash=row["addr_hash"],
        promote_after=row["promote_after"],
        id=row["id"],
        state=row["state"],
    )
