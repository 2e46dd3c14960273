"""The ledger: tables, migrations and the few queries and state changes the pipeline needs.

SQLite for the embedded setup, PostgreSQL in production; the same code and migrations for both.
Functions take a `Session` and leave commit/rollback to the caller (`db.transaction`), so a step's
changes and its audit events land together or not at all.
"""
