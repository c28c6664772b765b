"""Alembic environment for the job store, run programmatically (`service.store.upgrade_to_head`).

There is no alembic.ini: the URL comes from `config.attributes["database_url"]`, or, for the
`alembic` command line, from GOLDILOCKS_DATABASE_URL.
"""

from __future__ import annotations

import os

from alembic import context

from service.store import Base, make_engine

config = context.config
url = config.attributes.get("database_url") or os.environ["GOLDILOCKS_DATABASE_URL"]


def run_migrations_online() -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            # render_as_batch: SQLite cannot ALTER most things; batch mode copies the table.
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: run them against a database")
run_migrations_online()
