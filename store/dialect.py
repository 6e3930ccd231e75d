"""The two engines' ``Dialect`` (store/backend.py): the few phrases their SQL says
differently. Everything else is written once, in the SQL both engines read.

Domain code passes lists to a statement as one JSON text parameter and reads it back: a list
of ids through ``json_values`` (a SELECT, for ``x IN (...)``), a list of rows (each a JSON
array) through ``json_rows`` (a FROM item named ``j``) and ``json_at``::

    f"... WHERE id IN ({dialect.json_values('?', 'INTEGER')})"
    f"SELECT {dialect.json_at(0, 'INTEGER')}, ... FROM {dialect.json_rows()} JOIN ..."

``j.key`` tells the rows apart (SQLite counts them from 0, PostgreSQL from 1: use it to
group or order, not as an index)."""

from __future__ import annotations

from dataclasses import dataclass

# What json_at and json_values read an element as, per engine. PostgreSQL's INTEGER is 32
# bits: the store's integers (microsecond times, ids) need its BIGINT.
_PG_TYPES = {"INTEGER": "BIGINT", "TEXT": "TEXT", "REAL": "DOUBLE PRECISION"}
_LIKE_ESCAPE = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})


def _known(sql_type: str) -> str:
    if sql_type.upper() not in _PG_TYPES:
        raise ValueError(f"JSON elements are read as INTEGER, TEXT or REAL, not {sql_type!r}")
    return sql_type.upper()


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
        _known(sql_type)  # SQLite reads a JSON number as an integer by itself
        return f"SELECT value FROM json_each({param})"

    def json_rows(self, param: str = "?") -> str:
        return f"json_each({param}) AS j"

    def json_at(self, index: int, sql_type: str) -> str:
        _known(sql_type)
        return f"json_extract(j.value, '$[{int(index)}]')"

    def utc_day(self, column: str) -> str:
        return f"date({column} / 1000000, 'unixepoch')"

    def serialize(self, name: str) -> str:
        return ""  # BEGIN IMMEDIATE: one write transaction at a time already

    def indexed_by(self, index: str) -> str:
        # SQLite's planner, without statistics, took a worse index for the activity chart.
        return f" INDEXED BY {index}"

    def not_indexed(self) -> str:
        # Without statistics SQLite took an index of a condition beside the keys (every
        # pending observation, by state) and tested each of its rows against the keys.
        return " NOT INDEXED"


@dataclass(frozen=True)
class PgDialect:
    name: str = "postgresql"
    # Nodes claim from one table at once: each takes rows no other transaction holds.
    skip_locked: str = " FOR UPDATE SKIP LOCKED"

    # A parameter is cast to jsonb where it is read, so that it travels as text as on
    # SQLite; an element is text until cast to its type (PostgreSQL compares no number
    # with text).
    def json_values(self, param: str = "?", sql_type: str = "TEXT") -> str:
        return (f"SELECT CAST(value AS {_PG_TYPES[_known(sql_type)]}) AS value"
                f" FROM jsonb_array_elements_text(CAST({param} AS jsonb)) AS value")

    def json_rows(self, param: str = "?") -> str:
        return f"jsonb_array_elements(CAST({param} AS jsonb)) WITH ORDINALITY AS j(value, key)"

    def json_at(self, index: int, sql_type: str) -> str:
        pg_type = _PG_TYPES[_known(sql_type)]
        element = f"j.value ->> {int(index)}"
        return f"({element})" if pg_type == "TEXT" else f"CAST({element} AS {pg_type})"

    def utc_day(self, column: str) -> str:
        return f"to_char(to_timestamp({column} / 1000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    def serialize(self, name: str) -> str:
        return f"SELECT pg_advisory_xact_lock(hashtext('clickrelay.{name}'))"

    def indexed_by(self, index: str) -> str:
        return ""  # PostgreSQL's planner chooses by its statistics

    def not_indexed(self) -> str:
        return ""


SQLITE = SqliteDialect()
POSTGRESQL = PgDialect()
DIALECTS = {d.name: d for d in (SQLITE, POSTGRESQL)}
