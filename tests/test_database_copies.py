"""Each test's own database (tests/support/databases.py): a fresh copy, dropped once finished."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from rotator.audit.records import SCHEMA_REVISION
from tests.support.databases import DatabaseCopies
from tests.support.servers import PostgresServer


@pytest.fixture
def copies(postgres: PostgresServer, migrated_template: str) -> Iterator[DatabaseCopies]:
    made = DatabaseCopies(postgres, migrated_template)
    yield made
    made.close()


def query(postgres: PostgresServer, database: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(
        host=postgres.host, port=postgres.port, user=postgres.user, dbname=database
    ) as connection:
        cursor = connection.execute(sql)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def test_every_database_taken_is_a_new_copy_of_the_template_at_the_head_revision(
    postgres: PostgresServer, copies: DatabaseCopies
) -> None:
    first, second = copies.take(), copies.take()
    query(postgres, first, "INSERT INTO policy_state (policy, updated_at) VALUES ('app', now())")

    assert first != second
    for name in (first, second):
        assert query(postgres, name, "SELECT version_num FROM alembic_version") == [
            (SCHEMA_REVISION,)
        ]
    assert query(postgres, second, "SELECT policy FROM policy_state") == []


def test_a_finished_database_is_dropped(postgres: PostgresServer, copies: DatabaseCopies) -> None:
    name = copies.take()
    query(postgres, name, "SELECT 1")

    copies.finished(name)

    deadline = time.monotonic() + 10
    while query(postgres, "postgres", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):  # noqa: S608
        assert time.monotonic() < deadline, f"{name} was not dropped"
        time.sleep(0.01)


def test_a_copy_that_cannot_be_made_fails_the_test_that_takes_it(
    postgres: PostgresServer,
) -> None:
    copies = DatabaseCopies(postgres, "no_such_template")
    try:
        with pytest.raises(RuntimeError, match="copying the test database failed"):
            copies.take()
    finally:
        copies.close()
