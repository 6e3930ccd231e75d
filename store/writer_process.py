"""The observation writer's process (``python -m store.writer_process <database>``): it
commits the batches of observations that the server (store/writer.py) sends it.

The conversation, on the writer's standard input and output, one batch at a time:

- request: a 4-byte little-endian length, then ``marshal`` of ``(key, rows, values)``:
  a random batch key, and the rows as ``store.clicks.observation_values`` lays them out;
- answer: the same framing around ``(key, error)``, ``error`` None once the batch is
  committed, else what SQLite said (nothing of the batch was written then).

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
from typing import BinaryIO

from store.clicks import insert_statements
from store.pragmas import PRAGMAS

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


def main() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # the answers' pipe carries answers only
    try:
        db = _connect(sys.argv[1], STATEMENT_JOURNAL_IN_MEMORY, NO_CHECKPOINT_IN_COMMIT)
        db.execute("SELECT batch FROM observation_writer").fetchone()
        checkpoints = Checkpointer(_connect(sys.argv[1]))
    except sqlite3.Error as exc:
        _answer(answers, 0, f"{type(exc).__name__}: {exc}")
        return
    checkpoints.start()
    _answer(answers, 0, None)
    since_checkpoint = 0
    with contextlib.suppress(BrokenPipeError):  # the server has gone: nothing to answer
        while (request := _read_request(requests)) is not None:
            key, rows, values = marshal.loads(request)
            _answer(answers, key, commit(db, key, rows, values))
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


def commit(db: sqlite3.Connection, key: int, rows: int, values: list[object]) -> str | None:
    """Write one batch with its key in one transaction, unless its key shows it was
    written already. None when committed, else the error (and nothing was written)."""
    try:
        statements = insert_statements(rows, values)
        db.execute("BEGIN IMMEDIATE")
        (last,) = db.execute("SELECT batch FROM observation_writer").fetchone()
        if last != key:
            for sql, params in statements:
                db.execute(sql, params)
            db.execute("UPDATE observation_writer SET batch = ?", (key,))
        db.execute("COMMIT")
    except Exception as exc:  # sqlite3's errors; a value it cannot bind or write as JSON
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        return f"{type(exc).__name__}: {exc}"
    return None


def _read_request(stream: BinaryIO) -> bytes | None:
    """The next request; None at the end of input (or a request cut off by it)."""
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    (size,) = FRAME.unpack(head)
    body = stream.read(size)
    return body if len(body) == size else None


def _answer(stream: BinaryIO, key: int, error: str | None) -> None:
    message = marshal.dumps((key, error))
    stream.write(FRAME.pack(len(message)) + message)
    stream.flush()


if __name__ == "__main__":
    main()
