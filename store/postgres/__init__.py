"""The store on PostgreSQL, for several clickrelay nodes sharing one database."""

from store.dialect import PgDialect
from store.postgres.db import PgDatabase, PgTx
from store.postgres.migrate import PgOpenError

__all__ = ["PgDatabase", "PgDialect", "PgOpenError", "PgTx"]
