"""The two engines' ``Dialect`` (store/backend.py): the few phrases their SQL says
differently. Domain code passes lists to a statement as one JSON text parameter and reads it
back as a table: a list of ids through ``json_values``, a list of rows (each a JSON array)
through ``json_rows`` and ``json_at``::

    f"... WHERE id IN (SELECT value FROM {dialect.json_values()})"
    f"SELECT {dialect.json_at(0, 'INTEGER')}, ... FROM {dialect.json_rows()} JOIN ..."

Both are FROM items. ``json_rows`` is named ``j``, and ``j.key`` tells its elements apart
(SQLite counts them from 0, PostgreSQL from 1: use it to group or order, not as an index)."""

from __future__ import annotations

# What json_at and json_values read an element as, per engine. PostgreSQL's INTEGER is 32
# bits: the store's integers (microsecond times, ids) need its BIGINT.
_PG_TYPES = {"INTEGER": "BIGINT", "TEXT": "TEXT", "REAL": "DOUBLE PRECISION"}


def _known(sql_type: str) -> str:
    if sql_type.upper() not in _PG_TYPES:
        raise ValueError(f"JSON elements are read as INTEGER, TEXT or REAL, not {sql_type!r}")
    return sql_type.upper()


class SqliteDialect:
    """SQLite's JSON1 functions: ``json_each`` already gives each element its SQL type."""

    name = "sqlite"
    skip_locked = ""  # one writer at a time: a claim's rows cannot be taken by another

    def json_values(self, param: str = "?", sql_type: str = "TEXT") -> str:
        """A table with one column ``value``: the elements of the JSON array ``param``.
        ``sql_type`` is what PostgreSQL must be told (``INTEGER`` for ids); SQLite reads
        a JSON number as an integer by itself."""
        _known(sql_type)
        return f"json_each({param})"

    def json_rows(self, param: str = "?") -> str:
        """A table ``j``: ``j.value`` is each element (an array) of the JSON array ``param``,
        read with ``json_at``; ``j.key`` its position."""
        return f"json_each({param}) AS j"

    def json_at(self, index: int, sql_type: str) -> str:
        """Element ``index`` of ``j.value``, as ``sql_type`` (INTEGER, TEXT or REAL)."""
        _known(sql_type)
        return f"json_extract(j.value, '$[{int(index)}]')"


class PgDialect:
    """PostgreSQL's jsonb functions. A parameter is cast to jsonb where it is read, so that
    it travels as text like SQLite's; an element is text until cast to its type."""

    name = "postgresql"
    # Several nodes claim work at once: each skips the rows another's claim has locked.
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def json_values(self, param: str = "?", sql_type: str = "TEXT") -> str:
        """A table with one column ``value``: the elements of the JSON array ``param``,
        as ``sql_type`` (TEXT, or INTEGER to compare with integer columns: PostgreSQL does
        not compare a number with text)."""
        source = f"jsonb_array_elements_text(CAST({param} AS jsonb)) AS value"
        if _known(sql_type) == "TEXT":
            return source
        cast = f"CAST(value AS {_PG_TYPES[sql_type.upper()]})"
        return f"(SELECT {cast} AS value FROM {source}) AS value"

    def json_rows(self, param: str = "?") -> str:
        """A table ``j``: ``j.value`` is each element (an array) of the JSON array ``param``,
        read with ``json_at``; ``j.key`` its position."""
        return f"jsonb_array_elements(CAST({param} AS jsonb)) WITH ORDINALITY AS j(value, key)"

    def json_at(self, index: int, sql_type: str) -> str:
        """Element ``index`` of ``j.value``, as ``sql_type`` (INTEGER, TEXT or REAL)."""
        pg_type = _PG_TYPES[_known(sql_type)]
        element = f"j.value ->> {int(index)}"
        return f"({element})" if pg_type == "TEXT" else f"CAST({element} AS {pg_type})"
