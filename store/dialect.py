"""Where the SQL of SQLite and of PostgreSQL differs (store/backend.py ``Dialect``): a
batch handed to a statement as one JSON parameter, and the claim's row locks. Everything
else is written once, in the SQL both engines read."""

from __future__ import annotations

from dataclasses import dataclass

_PG_TYPES = {"INTEGER": "BIGINT", "TEXT": "TEXT"}
_LIKE_ESCAPE = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})


def contains(column: str) -> str:
    """A condition: ``column`` contains the parameter, whatever the case (the parameter
    is ``containing(text)``). Both engines read it alike: SQLite's LIKE ignores the case
    of ASCII letters only, PostgreSQL's none."""
    return f"lower(coalesce({column}, '')) LIKE ? ESCAPE '\\'"


def containing(text: str) -> str:
    return f"%{text.lower().translate(_LIKE_ESCAPE)}%"


@dataclass(frozen=True)
class SqliteDialect:
    name: str = "sqlite"
    skip_locked: str = ""  # one writer at a time: a claim's UPDATE is never contended

    def json_values(self, param: str = "?", sql_type: str = "TEXT") -> str:
        return f"SELECT value FROM json_each({param})"

    def json_rows(self, param: str = "?") -> str:
        return f"json_each({param}) j"

    def json_at(self, index: int, sql_type: str) -> str:
        return f"json_extract(j.value, '$[{index}]')"

    def utc_day(self, column: str) -> str:
        return f"date({column} / 1000000, 'unixepoch')"

    def serialize(self, name: str) -> str:
        return ""  # BEGIN IMMEDIATE: one write transaction at a time already

    def indexed_by(self, index: str) -> str:
        # SQLite's planner, without statistics, took a worse index for the activity chart.
        return f" INDEXED BY {index}"


@dataclass(frozen=True)
class PostgresDialect:
    name: str = "postgresql"
    # Nodes claim from one table at once: each takes rows no other transaction holds.
    skip_locked: str = " FOR UPDATE SKIP LOCKED"

    def json_values(self, param: str = "?", sql_type: str = "TEXT") -> str:
        return (f"SELECT CAST(value AS {_PG_TYPES[sql_type]})"
                f" FROM jsonb_array_elements_text(CAST({param} AS jsonb)) AS value")

    def json_rows(self, param: str = "?") -> str:
        return f"jsonb_array_elements(CAST({param} AS jsonb)) WITH ORDINALITY AS j(value, key)"

    def json_at(self, index: int, sql_type: str) -> str:
        return f"CAST(j.value->>{index} AS {_PG_TYPES[sql_type]})"

    def utc_day(self, column: str) -> str:
        return f"to_char(to_timestamp({column} / 1000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    def serialize(self, name: str) -> str:
        return f"SELECT pg_advisory_xact_lock(hashtext('clickrelay.{name}'))"

    def indexed_by(self, index: str) -> str:
        return ""  # PostgreSQL's planner chooses by its statistics


SQLITE = SqliteDialect()
POSTGRESQL = PostgresDialect()
DIALECTS = {d.name: d for d in (SQLITE, POSTGRESQL)}
