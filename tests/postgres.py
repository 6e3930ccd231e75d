"""A PostgreSQL schema of its own for each test that needs the PostgreSQL store: created in
the test database, named in the URL's search_path, and dropped with everything in it after
the test. The server is the one at CLICKRELAY_TEST_POSTGRES, or the local default; where none
answers the test is skipped, saying so (CI starts one first: .ci/run)."""

from __future__ import annotations

import os
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from store.postgres.migrate import CONNECT_ERRORS, describe, one_line

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
ENV = "CLICKRELAY_TEST_POSTGRES"


def server_url() -> str:
    return os.environ.get(ENV) or DEFAULT_URL


def with_search_path(url: str, schema: str) -> str:
    """``url`` with its connections' search_path set to ``schema`` alone."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    query.append(("search_path", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


async def admin(url: str) -> asyncpg.Connection:
    """A connection to the test server, or the test skipped with the reason."""
    try:
        conn: asyncpg.Connection = await asyncpg.connect(url)
    except CONNECT_ERRORS as exc:
        pytest.skip(f"PostgreSQL not reachable at {describe(url)}: {one_line(exc)}; set {ENV}")
    return conn


@asynccontextmanager
async def fresh_schema(url: str | None = None) -> AsyncIterator[str]:
    """A URL whose search_path is a new, empty schema, dropped (CASCADE) at the end."""
    base = url or server_url()
    schema = f"test_{uuid.uuid4().hex[:16]}"
    conn = await admin(base)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    try:
        yield with_search_path(base, schema)
    finally:
        conn = await admin(base)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


# The SQLite declared type each PostgreSQL column type stands for (store/postgres/migrations).
SQLITE_TYPE = {"bigint": "INTEGER", "integer": "INTEGER", "text": "TEXT", "bytea": "BLOB",
               "double precision": "REAL"}
_ON_DELETE = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL",
              "d": "SET DEFAULT"}


async def pg_schema(conn: asyncpg.Connection) -> dict[str, Any]:
    """The tables of the connection's schema as tests/test_postgres_db.py compares them with
    SQLite's: per table its columns (name, SQLite type, NOT NULL, default, position in the
    primary key), its indexes (columns, partial or not), unique column sets and foreign keys."""
    tables: dict[str, Any] = {}
    for c in await conn.fetch(
        "SELECT c.table_name, c.column_name, c.data_type, c.is_nullable, c.column_default,"
        " (SELECT k.ordinal_position FROM information_schema.key_column_usage k"
        "  JOIN information_schema.table_constraints t USING (constraint_schema, constraint_name)"
        "  WHERE t.constraint_type = 'PRIMARY KEY' AND k.table_schema = c.table_schema"
        "  AND k.table_name = c.table_name AND k.column_name = c.column_name) AS pk"
        " FROM information_schema.columns c WHERE c.table_schema = current_schema()"
        " ORDER BY c.table_name, c.ordinal_position"
    ):
        default = c["column_default"]
        if default is not None:
            default = re.sub(r"::[a-z ]+$", "", default)
        table = tables.setdefault(c["table_name"], _empty())
        table["columns"].append((c["column_name"], SQLITE_TYPE.get(c["data_type"], c["data_type"]),
                                 c["is_nullable"] == "NO", default, c["pk"] or 0))
    for i in await conn.fetch(
        "SELECT t.relname AS table_name, x.relname AS index_name, i.indpred IS NOT NULL AS partial,"
        " ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)"
        "  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        "  ORDER BY k.n) AS columns,"
        " (SELECT CAST(k.contype AS text) FROM pg_constraint k WHERE k.conindid = i.indexrelid"
        "  AND k.contype IN ('p', 'u')) AS contype"
        " FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid"
        " JOIN pg_class t ON t.oid = i.indrelid"
        " WHERE t.relnamespace = CAST(current_schema() AS regnamespace)"
    ):
        table = tables[i["table_name"]]
        if i["contype"] == "u":
            table["unique"].add(tuple(i["columns"]))
        elif i["contype"] is None:
            table["indexes"][i["index_name"]] = (tuple(i["columns"]), i["partial"])
    for f in await conn.fetch(
        "SELECT k.conrelid::regclass::text AS table_name, k.confrelid::regclass::text AS target,"
        " CAST(k.confdeltype AS text) AS confdeltype,"
        " ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY AS c(attnum, n)"
        "  JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = c.attnum"
        "  ORDER BY c.n) AS columns,"
        " ARRAY(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY AS c(attnum, n)"
        "  JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = c.attnum"
        "  ORDER BY c.n) AS target_columns"
        " FROM pg_constraint k WHERE k.contype = 'f'"
        " AND k.connamespace = CAST(current_schema() AS regnamespace)"
    ):
        tables[f["table_name"]]["foreign_keys"].add(
            (tuple(f["columns"]), f["target"], tuple(f["target_columns"]),
             _ON_DELETE[f["confdeltype"]]))
    return tables


def _empty() -> dict[str, Any]:
    return {"columns": [], "indexes": {}, "unique": set(), "foreign_keys": set()}


def sqlite_schema(conn: sqlite3.Connection) -> dict[str, Any]:
    """SQLite's tables in the shape of ``pg_schema``."""
    tables: dict[str, Any] = {}
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    for name in names:
        table = tables[name] = _empty()
        for _, column, sql_type, notnull, default, pk in conn.execute(
                f"PRAGMA table_info({name})"):
            table["columns"].append((column, sql_type, bool(notnull or pk), default, pk))
        for _, index, unique, origin, partial in conn.execute(f"PRAGMA index_list({name})"):
            columns = tuple(r[2] for r in conn.execute(f"PRAGMA index_info({index})"))
            if origin == "c":
                table["indexes"][index] = (columns, bool(partial))
            elif origin == "u" and unique:
                table["unique"].add(columns)
        keys: dict[int, list[Any]] = {}
        for key_id, _, target, column, target_column, _, on_delete, _ in conn.execute(
                f"PRAGMA foreign_key_list({name})"):
            keys.setdefault(key_id, [target, [], [], on_delete])
            keys[key_id][1].append(column)
            keys[key_id][2].append(target_column)
        table["foreign_keys"] = {(tuple(c), t, tuple(tc), d) for t, c, tc, d in keys.values()}
    return tables
