"""The observation writer's process (``python -m store.writer.process <database>``): it
commits the batches of observations that the server (store/writer/client.py) sends it.

The conversation, on the writer's standard input and output, one batch at a time:

- request: a 4-byte little-endian length, then ``marshal`` of ``(key, rows, values)``:
  a random batch key, and the rows as ``store.clicks.observation_values`` lays them out;
- answer: the same framing around ``(key, error, dropped)``: ``error`` None once the
  batch is committed, else what SQLite said (nothing of the batch was written then);
  ``dropped``, the rows of a committed batch that could not be stored, as ``(index,
  reason)`` pairs.

A row that cannot be stored (a value SQLite cannot bind or write, a constraint it
breaks) costs that row alone, not its batch (docs/hostile-input.md): the statement holding it
fails by itself, SQLite undoes that statement and keeps the transaction, and its rows
are written again one by one inside the same transaction; those that fail alone are
dropped and reported. An error of the database itself (locked, full, a disk error) still
fails the whole batch, for the server to try again.

The first answer (key 0) says that the database is open. The writer commits each batch's
key with it (table ``observation_writer``); a batch sent again after a writer died before
answering (it may or may not have committed) keeps its key, and is not written twice.
The writer ignores SIGINT and SIGTERM: it ends when its input closes, after answering the
batch in hand, so that a Ctrl-C or a stop signal sent to the whole process group does not
cut a commit short; the server closes its input after the last batch."""

from __future__ import annotations

import contextlib
import marshal
import signal
import sqlite3
import struct
import sys
import threading
from collections.abc import Sequence
from typing import BinaryIO

from store.clicks import ROWS_PER_STATEMENT, insert_statements, row_statement
from store.pragmas import NO_BUSY_HANDLER, PRAGMAS, begin

FRAME = struct.Struct("<I")  # the length of the marshalled message that follows

# A multi-row INSERT inside a transaction keeps a statement journal (the pages it changes,
# as they were, to undo the statement alone). On disk that is a temporary file created,
# written and deleted at every batch: nearly half of the writer's system time.
STATEMENT_JOURNAL_IN_MEMORY = "PRAGMA temp_store = MEMORY"

# Checkpoints (copying the WAL's pages into the database file) are taken out of the
# commits: SQLite's own, inside the commit that passes a thousand pages, held that batch
# of clicks for several milliseconds. Here a thread copies most of the WAL while commits
# go on (a passive checkpoint); then, between two batches, the commit thread copies the
# few pages written meanwhile, so that the whole WAL is in the database file and the
# next commit starts the WAL over (a WAL that is never wholly copied only grows).
NO_CHECKPOINT_IN_COMMIT = "PRAGMA wal_autocheckpoint = 0"
CHECKPOINT_EVERY = 10  # batches between the ends of two checkpoints, at least

# The errors that belong to one row rather than to the database: a value that cannot be
# bound (text that is not UTF-8, an integer beyond 64 bits, an unsupported type) or
# written (too big), a constraint the row breaks, a row of the wrong length.
ROW_ERRORS = (ValueError, OverflowError, TypeError, sqlite3.IntegrityError,
              sqlite3.InterfaceError, sqlite3.ProgrammingError, sqlite3.DataError)

Dropped = list[tuple[int, str]]  # rows of a batch not stored: index, what SQLite said


def main() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # the answers' pipe carries answers only
    try:
        # Its only write is BEGIN IMMEDIATE, which waits for the lock itself (``begin``).
        db = _connect(sys.argv[1], STATEMENT_JOURNAL_IN_MEMORY, NO_CHECKPOINT_IN_COMMIT,
                      NO_BUSY_HANDLER)
        db.execute("SELECT batch FROM observation_writer").fetchone()
        checkpoints = Checkpointer(_connect(sys.argv[1]))
    except sqlite3.Error as exc:
        _answer(answers, 0, _error(exc))
        return
    checkpoints.start()
    _answer(answers, 0, None)
    since_checkpoint = 0
    with contextlib.suppress(BrokenPipeError):  # the server has gone: nothing to answer
        while (request := _read_request(requests)) is not None:
            key, rows, values = marshal.loads(request)
            _answer(answers, key, *commit(db, key, rows, values))
            since_checkpoint += 1
            if since_checkpoint >= CHECKPOINT_EVERY and checkpoints.idle:
                if checkpoints.copied.is_set():
                    checkpoints.copied.clear()
                    checkpoint(db)  # the pages written since the thread's checkpoint began
                    since_checkpoint = 0
                else:
                    checkpoints.begin()
    db.close()


def _connect(path: str, *pragmas: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in (*PRAGMAS, *pragmas):
        db.execute(pragma)
    return db


class Checkpointer(threading.Thread):
    """Passive checkpoints beside the commits: ``begin`` starts one, and ``copied`` is set
    when it has ended."""

    def __init__(self, db: sqlite3.Connection) -> None:
        super().__init__(name="checkpointer", daemon=True)  # a checkpoint cut off is safe
        self.db = db
        self.copied = threading.Event()
        self._due = threading.Event()
        self._idle = threading.Event()
        self._idle.set()

    @property
    def idle(self) -> bool:
        return self._idle.is_set()

    def begin(self) -> None:
        self._idle.clear()
        self._due.set()

    def run(self) -> None:
        while self._due.wait():
            self._due.clear()
            checkpoint(self.db)
            self.copied.set()
            self._idle.set()


def checkpoint(db: sqlite3.Connection) -> None:
    try:
        db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    except sqlite3.Error as exc:  # tried again at the next round
        print(f"observation writer: checkpoint failed: {exc}", file=sys.stderr)


def commit(db: sqlite3.Connection, key: int, rows: int, values: list[object]
           ) -> tuple[str | None, Dropped]:
    """Write one batch with its key in one transaction, unless its key shows it was
    written already. ``(None, dropped)`` when committed, the rows that could not be
    stored left out; else ``(error, [])`` and nothing was written."""
    try:
        statements = insert_statements(rows, values)
        begin(db)
        (last,) = db.execute("SELECT batch FROM observation_writer").fetchone()
        dropped: Dropped = []
        if last != key:
            for number, (sql, params) in enumerate(statements):
                first = number * ROWS_PER_STATEMENT
                if not _execute(db, sql, params):
                    dropped += _rows_one_by_one(db, values, first,
                                                min(rows, first + ROWS_PER_STATEMENT))
            db.execute("UPDATE observation_writer SET batch = ?", (key,))
        db.execute("COMMIT")
    except Exception as exc:  # sqlite3's errors, or a defect: the batch fails whole
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        return _error(exc), []
    return None, dropped


def _execute(db: sqlite3.Connection, sql: str, params: list[object]) -> bool:
    """Run one INSERT; False if it failed for a row's sake (SQLite has undone that
    statement alone, the transaction goes on). Any other error is raised."""
    try:
        db.execute(sql, params)
    except ROW_ERRORS:
        if not db.in_transaction:  # SQLite ended the transaction: not a row's error
            raise
        return False
    return True


def _rows_one_by_one(db: sqlite3.Connection, values: list[object], first: int, end: int
                     ) -> Dropped:
    """Write rows ``first`` to ``end`` of a statement that failed, one by one: the rows
    that fail alone are left out."""
    dropped = []
    for row in range(first, end):
        try:
            db.execute(*row_statement(values, row))
        except ROW_ERRORS as exc:
            if not db.in_transaction:
                raise
            dropped.append((row, _error(exc)))
    return dropped


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _read_request(stream: BinaryIO) -> bytes | None:
    """The next request; None at the end of input (or a request cut off by it)."""
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    (size,) = FRAME.unpack(head)
    body = stream.read(size)
    return body if len(body) == size else None


def _answer(stream: BinaryIO, key: int, error: str | None,
            dropped: Sequence[tuple[int, str]] = ()) -> None:
    message = marshal.dumps((key, error, list(dropped)))
    stream.write(FRAME.pack(len(message)) + message)
    stream.flush()


if __name__ == "__main__":
    main()
