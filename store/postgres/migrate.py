"""Opening a PostgreSQL store: the first connection, with failures said in one line, and the
migrations in store/postgres/migrations, applied once however many nodes start together."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs, urlsplit

import asyncpg

from store.clock import now_us
from store.db import migrations as engine_migrations

# What a connection attempt can fail with: the address (refused, unknown host, timeout: all
# OSError), the server (authentication, no such database), or the URL itself.
CONNECT_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError)


class PgOpenError(OSError):
    """A PostgreSQL store that cannot be opened. An OSError, as a port that is taken or a
    directory that cannot be made: what stops the start, said in one line (relay/cli.py)."""


def describe(url: str) -> str:
    """Where ``url`` points, for messages: host, port, database and schema, never the
    password."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "an unreadable URL"
    database = parts.path.lstrip("/") or parts.username or "postgres"
    where = f"{host}:{port}/{database}"
    schema = parse_qs(parts.query).get("search_path")
    return f"{where} (schema {schema[0]})" if schema else where


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


async def connect(url: str) -> asyncpg.Connection:
    """One connection to ``url``, or a PgOpenError naming the server and the database."""
    try:
        conn: asyncpg.Connection = await asyncpg.connect(url)
    except CONNECT_ERRORS as exc:
        raise PgOpenError(f"cannot connect to PostgreSQL at {describe(url)}: "
                          f"{one_line(exc)}") from None
    return conn


def migrations() -> list[tuple[int, str, str]]:
    """The PostgreSQL migrations this clickrelay knows: (version, file name, SQL)."""
    return engine_migrations("store.postgres.migrations")


def lock_key(schema: str) -> int:
    """The advisory lock that migrating ``schema`` holds: one per schema, so that stores in
    different schemas of one database migrate without waiting for each other. A stable hash
    (not Python's ``hash``, which differs between processes)."""
    digest = hashlib.sha256(f"clickrelay schema_migrations {schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def migrate(conn: asyncpg.Connection, url: str) -> None:
    """Apply the migrations the database has not seen yet, each in a transaction of its
    own, all under the schema's advisory lock: nodes that start together wait for the first
    one's migrations instead of racing to apply them twice. A database that a newer
    clickrelay has migrated is refused: this code would not know its tables."""
    schema = await conn.fetchval("SELECT current_schema()")
    if schema is None:
        raise PgOpenError(f"cannot open the store at {describe(url)}: no schema of its "
                          "search_path exists (create it, or name an existing one)")
    key = lock_key(schema)
    await conn.execute("SELECT pg_advisory_lock($1)", key)
    try:
        await _apply(conn, url)
    except asyncpg.PostgresError as exc:
        raise PgOpenError(f"cannot migrate the store at {describe(url)}: "
                          f"{one_line(exc)}") from exc
    finally:
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", key)


async def _apply(conn: asyncpg.Connection, url: str) -> None:
    # Created under the lock: two CREATE TABLE IF NOT EXISTS at once can both miss the
    # table and one of them then fails on the catalog's unique index.
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
        " name TEXT, applied_at BIGINT NOT NULL)"
    )
    applied = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
    known = migrations()
    newest_known = max((version for version, _, _ in known), default=0)
    newest_applied = max(applied, default=0)
    if newest_applied > newest_known:
        raise PgOpenError(
            f"cannot open the store at {describe(url)}: the database's schema is version "
            f"{newest_applied}, newer than this clickrelay ({newest_known}): upgrade clickrelay"
        )
    for version, name, sql in known:
        if version in applied:
            continue
        async with conn.transaction():
            await conn.execute(sql)  # no parameters: the whole script in one trip
            await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2, $3)",
                               version, name, now_us())
