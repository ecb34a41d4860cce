"""Alembic migrations on PostgreSQL and SQLite: up from empty, down, and up again."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, inspect

from rotator.audit import migrations
from rotator.audit.connections import make_engine
from rotator.audit.records import SCHEMA_REVISION
from rotator.audit.tables import metadata
from rotator.errors import SchemaOutOfDate
from rotator.secret import Secret

TABLES = {"rotations", "policy_state", "audit_events"}


def test_upgrade_from_empty_creates_every_table(database_url: str) -> None:
    engine = make_engine(Secret(database_url))
    migrations.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert migrations.current_revision(engine) == migrations.head_revision()


def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    engine = make_engine(Secret(database_url))
    migrations.upgrade(engine)
    migrations.downgrade(engine, "base")
    assert not TABLES & set(inspect(engine).get_table_names())
    assert migrations.current_revision(engine) is None
    migrations.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES


def test_the_migrations_create_the_schema_the_tables_declare(database_url: str) -> None:
    # What Alembic's autogenerate compares: nothing to add, drop or alter, partial indexes
    # (declared for Alembic only, rotator.audit.tables) included.
    engine = make_engine(Secret(database_url))
    migrations.upgrade(engine)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []


def test_an_empty_database_is_reported_as_out_of_date(database_url: str) -> None:
    engine = make_engine(Secret(database_url))
    with pytest.raises(SchemaOutOfDate, match="run 'rotator db upgrade'"):
        migrations.require_current_schema(engine)


def test_the_schema_constant_is_the_newest_migration() -> None:
    assert migrations.head_revision() == SCHEMA_REVISION


def test_the_start_up_check_of_a_current_schema_is_one_query(migrated_pg_url: str) -> None:
    """Every command checks the schema as it opens the audit database: a round trip each counts."""
    engine = make_engine(Secret(migrated_pg_url))
    with engine.connect():
        pass  # SQLAlchemy's own first-connection queries are not the check's
    statements: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    migrations.require_current_schema(engine)

    assert statements == ["SELECT version_num FROM alembic_version"]
    engine.dispose()
