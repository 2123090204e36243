"""Alembic migrations on a real Postgres: upgrade from empty, downgrade to empty, again."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy import create_engine, inspect

from farm.migrate import downgrade, upgrade
from farm.tables import Base

from ..services import PG_ADMIN


@pytest.fixture
def empty_db():
    name = f"farm_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    yield url
    from farm.db import get_engine

    get_engine(url).dispose()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_from_empty_creates_the_models_schema_and_downgrade_removes_it(empty_db):
    assert tables(empty_db) == set()
    upgrade(empty_db)
    assert tables(empty_db) == set(Base.metadata.tables) | {"alembic_version"}
    engine = create_engine(empty_db)
    columns = {c["name"] for c in inspect(engine).get_columns("takes")}
    engine.dispose()
    assert set(Base.metadata.tables["takes"].columns.keys()) == columns
    downgrade(empty_db, "base")
    assert tables(empty_db) == {"alembic_version"}
    upgrade(empty_db)  # and back up again
    assert set(Base.metadata.tables) <= tables(empty_db)


def test_migrations_match_the_models(empty_db):
    """No drift: autogenerate against the migrated database finds nothing to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    upgrade(empty_db)
    engine = create_engine(empty_db)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []
