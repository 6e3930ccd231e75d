"""``clickrelay store copy``: every row of one store into another, empty one, on either
engine (a SQLite node moving up to PostgreSQL, docs/deployment.md "Moving up from SQLite").

The copy works on two ``Store`` objects and the SQL both engines read. The source is read
in batches, by its primary keys, so that memory stays bounded however many observations it
holds; the target is written in ONE transaction, so that a copy that fails (or is
interrupted) leaves the target with its schema and no rows: it can be run again as it was.
Bodies that a SQLite store keeps in files beside its database (store/bodies.py) are read
and put inline, since a PostgreSQL store keeps every body in the database (and a SQLite
target reads an inline body as well). Claims are copied as unclaimed, so that the new
nodes take the queued work at once, and PostgreSQL's identity sequences are moved past
the copied ids, so that new rows never take a copied row's id.

The source must not be written while it is copied (stop its node first): its batches are
not one snapshot."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from store.backend import Row, Tx
from store.bodies import BodyFiles, pack_fills, unpack_lengths
from store.db import migrations as engine_migrations
from store.store import Store

BATCH_ROWS = 1000  # rows read and written per batch
BATCH_BYTES = 16 * 1024 * 1024  # at most this much of a table's blobs per batch
PROGRESS_EVERY = 100_000  # a progress line at least this often, in rows


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]  # its primary key: the order the batches are read in
    blobs: tuple[str, ...] = ()  # columns whose size bounds a batch
    # A NULL in the first blob column means a body file (SQLite): as large as a batch may be.
    in_files: bool = False
    identity: bool = False  # PostgreSQL fills ``id`` from a sequence


# Every table of the store but schema_migrations (which the target's migrations write),
# parents before the rows that refer to them (PostgreSQL checks each foreign key at once).
TABLES = (
    Table("messages", ("id",), ("body", "fills")),
    Table("delivery_attempts", ("id",), identity=True),
    Table("links", ("message_id", "link_index")),
    Table("bodies", ("id",), ("data",), in_files=True),
    Table("submission_links", ("submission_id", "link_index")),
    Table("observations", ("id",), identity=True),
    Table("observation_writer", ("id",)),
    Table("events", ("id",)),
    Table("webhook_deliveries", ("id",)),
    Table("webhook_attempts", ("id",), identity=True),
    Table("idempotency_keys", ("project_id", "scope", "key")),
    Table("config_items", ("kind", "id")),
    Table("route_settings", ("route_id", "key")),
    Table("dashboard_sessions", ("id_hash",)),
    Table("dashboard_activity", ("project_id", "route_id", "tag", "bucket_us", "start")),
)
# Rows a new store holds from its migrations: its one row is overwritten, not added.
PRESET = "observation_writer"

Progress = Callable[[str, int, int], None]  # table, rows copied so far, rows in all


class CopyError(Exception):
    """A copy refused or failed, said in one line (relay/cli.py prints it)."""


def code_version(engine: str) -> int:
    """The schema version this clickrelay migrates ``engine``'s stores to."""
    package = "store.postgres.migrations" if engine == "postgresql" else "store.migrations"
    return max(version for version, _, _ in engine_migrations(package))


async def check_source(where: Path | str) -> None:
    """Refuse a source that does not exist or whose schema is not this clickrelay's:
    asked before ``Store.open``, which would create or migrate it."""
    if isinstance(where, Path):
        version = _sqlite_version(where)
        engine = "sqlite"
    else:
        version = await _pg_version(where)
        engine = "postgresql"
    expected = code_version(engine)
    if version != expected:
        newer = "newer" if (version or 0) > expected else "older"
        advice = ("upgrade clickrelay" if newer == "newer"
                  else "start this clickrelay on it once (clickrelay serve) to migrate it")
        raise CopyError(f"the source store's schema is version {version}, {newer} than this "
                        f"clickrelay's ({expected}): {advice}, then copy")


def _sqlite_version(path: Path) -> int | None:
    if not path.is_file():
        raise CopyError(f"no store at {path}")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise CopyError(f"{path} is not a clickrelay store: {exc}") from None
    return None if row is None else row[0]


async def _pg_version(url: str) -> int | None:
    from store.postgres.migrate import connect  # asyncpg only where it is used

    conn = await connect(url)
    try:
        if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
            raise CopyError("the source database holds no clickrelay store")
        version: int | None = await conn.fetchval("SELECT max(version) FROM schema_migrations")
        return version
    finally:
        await conn.close()


async def copy_store(source: Store, target: Store, progress: Progress) -> dict[str, int]:
    """Copy every table of ``source`` into ``target`` (both open, the same schema version),
    in one transaction on the target; how many rows each table got. Raises CopyError for a
    target that holds rows or whose schema differs."""
    row = await target.db.fetchone("SELECT max(version) FROM schema_migrations")
    expected = code_version(target.db.dialect.name)
    if row is None or row[0] != expected:
        raise CopyError(f"the target store's schema is version {row and row[0]}, not this "
                        f"clickrelay's ({expected})")
    totals = {}
    for table in TABLES:
        counted = await source.db.fetchone(f"SELECT count(*) FROM {table.name}")
        totals[table.name] = int(counted[0]) if counted else 0
    copied: dict[str, int] = {}
    async with target.db.transaction() as tx:
        await _check_empty(tx)
        for table in TABLES:
            copied[table.name] = await _copy_table(source, tx, table, totals[table.name],
                                                   progress)
            if table.identity and target.db.dialect.name == "postgresql":
                await tx.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'),"
                    f" (SELECT max(id) FROM {table.name})) WHERE EXISTS"
                    f" (SELECT 1 FROM {table.name})")
    return copied


async def _check_empty(tx: Tx) -> None:
    for table in TABLES:
        if table.name != PRESET and await tx.fetchone(f"SELECT 1 FROM {table.name} LIMIT 1"):
            raise CopyError(f"the target store is not empty: table {table.name} holds rows "
                            "(copy only into a new store)")


async def _copy_table(source: Store, tx: Tx, table: Table, total: int,
                      progress: Progress) -> int:
    done = told = 0
    after: tuple[Any, ...] | None = None
    files = None if source.db.files_dir is None else BodyFiles.beside(source.db.files_dir)
    progress(table.name, 0, total)
    while True:
        rows = await _next_batch(source, table, after)
        if not rows:
            break
        after = tuple(rows[-1][column] for column in table.key)
        values = [await _portable(files, table, r) for r in rows]
        columns = list(values[0])
        if table.name == PRESET:
            await tx.execute(f"DELETE FROM {PRESET}")
        await tx.executemany(
            f"INSERT INTO {table.name} ({', '.join(columns)})"
            f" VALUES ({', '.join('?' for _ in columns)})",
            [[v[c] for c in columns] for v in values])
        done += len(rows)
        if done - told >= PROGRESS_EVERY:
            progress(table.name, done, total)
            told = done
    if told != done or total == 0:
        progress(table.name, done, total)
    return done


async def _next_batch(source: Store, table: Table, after: tuple[Any, ...] | None
                      ) -> Sequence[Row]:
    """The next rows by primary key: up to BATCH_ROWS, and for a table with blobs no more
    than BATCH_BYTES of them (at least one row), measured before the rows are read; a
    body kept in a file is read in a batch of its own."""
    key = ", ".join(table.key)
    where = "" if after is None else (
        f" WHERE ({key}) > ({', '.join('?' for _ in table.key)})")
    params = () if after is None else after
    limit = BATCH_ROWS
    if table.blobs:
        unknown = BATCH_BYTES if table.in_files else 0  # a body in a file: a batch alone
        size = " + ".join(f"coalesce(length({c}), {unknown})" for c in table.blobs)
        sizes = await source.db.fetchall(
            f"SELECT {size} FROM {table.name}{where} ORDER BY {key} LIMIT {BATCH_ROWS}", params)
        limit, running = 0, 0
        for size_row in sizes:
            running += int(size_row[0])
            if limit and running > BATCH_BYTES:
                break
            limit += 1
    if limit == 0:
        return []
    return await source.db.fetchall(
        f"SELECT * FROM {table.name}{where} ORDER BY {key} LIMIT {limit}", params)


async def _portable(files: BodyFiles | None, table: Table, row: Row) -> dict[str, Any]:
    """A source row as the target takes it: bodies and fills kept in the source's body
    ``files`` put inline, claims dropped."""
    values = dict(zip(row.keys(), row, strict=True))  # a row iterates its values
    if "claimed_by" in values:
        values["claimed_by"] = values["claimed_until"] = None
    if table.name == "bodies" and values["data"] is None and files is not None:
        try:
            pieces = await files.read(values["id"], unpack_lengths(values["pieces"]))
        except OSError as exc:
            raise CopyError(f"cannot read the body file of {values['id']}: {exc}") from None
        values["data"] = b"".join(pieces)
    if table.name == "messages" and values["fills_at"] is not None and files is not None:
        span = (values["fills_at"], values["fills_size"])
        try:
            values["fills"] = pack_fills(await files.read_fills(values["body_id"], span))
        except OSError as exc:
            raise CopyError(f"cannot read the fills of {values['id']} from the body file "
                            f"of {values['body_id']}: {exc}") from None
        values["fills_at"] = values["fills_size"] = None
    return values


async def copy_between(source_where: Path | str, target_where: Path | str,
                       progress: Progress) -> dict[str, int]:
    """Open both stores (the target is created and migrated if it has no schema), copy,
    close; how many rows each table got. Every failure is a CopyError in one line."""
    errors = _database_errors(source_where, target_where)
    try:
        await check_source(source_where)
        source = await Store.open(source_where)
        try:
            target = await Store.open(target_where)
            try:
                return await copy_store(source, target, progress)
            finally:
                await target.close()
        finally:
            await source.close()
    except errors as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise CopyError(text) from exc


def _database_errors(*wheres: Path | str) -> tuple[type[BaseException], ...]:
    """What opening, reading and writing the stores can fail with."""
    errors: list[type[BaseException]] = [sqlite3.Error, OSError]
    if any(isinstance(where, str) for where in wheres):
        import asyncpg  # only where PostgreSQL is used

        errors += [asyncpg.PostgresError, asyncpg.InterfaceError]
    return tuple(errors)
