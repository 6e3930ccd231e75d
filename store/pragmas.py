"""The settings of every connection to the database, in the server's process and in the
observation writer's: WAL, and ``synchronous = FULL`` so that a committed transaction
survives a power cut; and how a write transaction waits for the write lock (``begin``)."""

import sqlite3
import time

# How long a write waits for the database's write lock before it fails: SQLite's busy
# timeout, and the observation writer's own wait (store/writer/process.py).
LOCK_WAIT_SECONDS = 5.0

PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    f"PRAGMA busy_timeout = {int(LOCK_WAIT_SECONDS * 1000)}",
)

# For a connection whose writes can all be made again if lost (promotion's: store.Store.open
# ``sync_commits=False``): its commits are not synced themselves; in WAL mode the next
# synced commit of any connection syncs the log file, and theirs with it.
COMMITS_SYNCED_BY_THE_NEXT_WRITER = "PRAGMA synchronous = NORMAL"

# The write lock is shared by the clicks' writer, the server and promotion. SQLite's busy
# handler waits for it in growing sleeps (1, 2, 5, 10, 15 ms …), so a batch of clicks
# behind a transaction of 3 ms waited 8, and promotion, behind the clicks' writer, lost
# whole steps: most of the redirect's tail while promotion wrote (docs/performance.md).
# ``begin`` asks again every LOCK_POLL_SECONDS instead, and gets the lock within that time
# of its release. The busy timeout stays the wait of the readers' connections.
LOCK_POLL_SECONDS = 0.0002
NO_BUSY_HANDLER = "PRAGMA busy_timeout = 0"


def begin(db: sqlite3.Connection, wait: float = LOCK_WAIT_SECONDS) -> None:
    """Begin a write transaction on a connection without a busy handler
    (``NO_BUSY_HANDLER``: the writers' connections), waiting up to ``wait`` seconds for
    the write lock; SQLite's "database is locked" after that, and any other error at once."""
    deadline = time.monotonic() + wait
    while True:
        try:
            db.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            busy = exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY  # or an extended code
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(LOCK_POLL_SECONDS)
