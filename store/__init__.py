"""Persistence behind one narrow interface: SQLite now, PostgreSQL later."""
