"""Alembic environment: the same database URL as the farm (FARM_DATABASE_URL)."""

from __future__ import annotations

from alembic import context

from farm.db import get_engine
from farm.settings import Settings
from farm.tables import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or Settings().database


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    with get_engine(url).connect() as connection:
        # batch mode: SQLite alters tables by copying them
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
