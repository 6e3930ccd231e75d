"""Observations: what the tracker stores of each click before it answers (docs/redirect.md).

The tracker writes them in batches (group commit: many concurrent clicks, one transaction,
one fsync); promotion reads them by message."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from store.records import Observation

if TYPE_CHECKING:
    from store.backend import Database, Row, Tx

log = logging.getLogger("clickrelay.store")

VALUES_PER_ROW = 11
_HEADERS = 7  # the headers' place among a row's values
# SQLite binds at most 32766 parameters per statement.
ROWS_PER_STATEMENT = 500
_COLUMNS = (
    "id, message_id, link_index, destination, project_sid, at, method, user_agent, headers,"
    " network, addr_hash, promote_after, state"
)
_quote = json.encoder.encode_basestring  # a str as a JSON string, non-ASCII kept


class ClickStore:
    db: Database

    async def record_observations(self, batch: Sequence[Observation]) -> list[int]:
        """Write a batch in one transaction; on return every observation is on disk.
        Up to ``ROWS_PER_STATEMENT`` rows go in one multi-row INSERT: one trip to the
        database and one commit for the whole batch. The places of the rows the database
        refused are returned (most often none; see ``_one_by_one``). On SQLite the tracker
        writes its clicks through store/writer/client.py instead, in a process of its own;
        on PostgreSQL through here, on the event loop (docs/redirect.md), where a batch of
        one statement is written as a lone statement: atomic as a transaction would be,
        in one trip to the server instead of three (BEGIN, INSERT, COMMIT)."""
        statements = insert_statements(len(batch), observation_values(batch))
        try:
            if len(statements) == 1:
                await self.db.write_statement(*statements[0])
            else:
                await self.db.write(functools.partial(_execute_all, statements=statements))
        except Exception:
            if len(batch) == 1:
                raise
            return await self._one_by_one(batch)
        return []

    async def _one_by_one(self, batch: Sequence[Observation]) -> list[int]:
        """A batch the database refused, written row by row in one group commit: the
        places of the rows it refuses again (a value it cannot store, such as a NUL in a
        header for PostgreSQL) are returned and the others committed; if it refuses them
        all (the database is down), the first error is raised."""
        outcomes = await asyncio.gather(*(
            self.db.write_grouped(functools.partial(
                _execute_all, statements=insert_statements(1, observation_values([o]))))
            for o in batch), return_exceptions=True)
        refused = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, BaseException)]
        if len(refused) == len(batch):
            raise outcomes[0]  # type: ignore[misc]
        for i in refused:
            log.warning("observation of message %s not stored: %s", batch[i].message_id,
                        outcomes[i])
        return refused

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


async def _execute_all(tx: Tx, statements: list[tuple[str, list[object]]]) -> None:
    for sql, params in statements:
        await tx.execute(sql, params)


def observation_values(batch: Sequence[Observation]) -> list[object]:
    """The parameters of the INSERTs of a batch, row after row (the column order of
    ``insert_statements``), the headers still a dict: ``insert_statements`` writes them
    as JSON where the rows are written (in the observation writer's process, not on the
    event loop that answers the clicks)."""
    values: list[object] = []
    for o in batch:
        values += (o.message_id, o.link_index, o.destination, o.project_sid, o.at, o.method,
                   o.user_agent, o.headers, o.network, o.addr_hash, o.promote_after)
    return values


def insert_statements(rows: int, values: list[object]) -> list[tuple[str, list[object]]]:
    """The multi-row INSERTs that write ``rows`` observations given as
    ``observation_values``: one per ``ROWS_PER_STATEMENT`` rows. Each row's headers are
    replaced in ``values`` by their JSON object."""
    headers = cast(list[dict[str, str]], values[_HEADERS::VALUES_PER_ROW])
    values[_HEADERS::VALUES_PER_ROW] = [_headers_json(h) for h in headers]
    if rows <= ROWS_PER_STATEMENT:
        return [(_insert(rows), values)] if rows else []
    return [(_insert(min(ROWS_PER_STATEMENT, rows - first)),
             values[first * VALUES_PER_ROW : (first + ROWS_PER_STATEMENT) * VALUES_PER_ROW])
            for first in range(0, rows, ROWS_PER_STATEMENT)]


def row_statement(values: list[object], row: int) -> tuple[str, list[object]]:
    """The INSERT of row ``row`` alone, from values ``insert_statements`` has been given:
    the writer tries the rows of a statement that failed one by one."""
    return _insert(1), values[row * VALUES_PER_ROW : (row + 1) * VALUES_PER_ROW]


def _headers_json(headers: dict[str, str]) -> str | dict[str, str]:
    """``json.dumps(headers, ensure_ascii=False)``, a flat object of strings, in half the
    time: it is written for every click. Anything else is left as it is, for the INSERT
    to refuse that row alone."""
    try:
        return "{" + ", ".join([f"{_quote(k)}: {_quote(v)}" for k, v in headers.items()]) + "}"
    except (AttributeError, TypeError):
        return headers


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
