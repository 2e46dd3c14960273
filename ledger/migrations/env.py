"""Alembic environment for the ledger, run in code by `creditflow.ledger.db.upgrade`.

The caller hands over an open connection in `config.attributes["connection"]` (or a URL in
`sqlalchemy.url`). Online mode only: the ledger is always migrated against a live database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from creditflow.ledger.db import make_engine
from creditflow.ledger.models import metadata

# Any fixed 64-bit number: concurrent `upgrade()` calls on one PostgreSQL database queue behind it.
MIGRATION_LOCK_ID = 0x63726564_6C656467  # "credledg"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs need table copies
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


def run_migrations_online() -> None:
    given = context.config.attributes.get("connection")
    if given is not None:
        if isinstance(given, Connection):
            _run(given)
        else:  # an Engine
            with given.begin() as connection:
                _run(connection)
        return
    engine = make_engine(context.config.get_main_option("sqlalchemy.url"))
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("the ledger migrations run online only (creditflow.ledger.db.upgrade)")
run_migrations_online()
