"""The settings of every connection to the database, in the server's process and in the
observation writer's: WAL, and ``synchronous = FULL`` so that a committed transaction
survives a power cut."""

PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 5000",
)
