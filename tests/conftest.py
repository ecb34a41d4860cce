"""Session-wide real servers (PostgreSQL, OpenBao) and per-test isolation on top of them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.servers import OpenBaoServer, PostgresServer, openbao_server, postgres_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def openbao() -> Iterator[OpenBaoServer]:
    with openbao_server() as server:
        yield server


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin: Any = postgres.admin_connect()
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield postgres.url(name)
    admin = postgres.admin_connect()
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'rotator.db'}"


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on PostgreSQL and on SQLite."""
    fixture = "pg_url" if request.param == "postgresql" else "sqlite_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def vault_prefix() -> str:
    """A Vault path prefix no other test uses."""
    return f"t-{uuid.uuid4().hex[:10]}"
