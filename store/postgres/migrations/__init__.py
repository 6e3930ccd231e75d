"""The PostgreSQL schema, one SQL file per version (store/postgres/migrate.py)."""
