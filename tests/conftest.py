"""Session-wide real servers (PostgreSQL, OpenBao) and per-test isolation on top of them."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rotator.sandbox.registry import emulator_class
from rotator.sandbox.server import EmulatorServer
from tests.support.contracts import ContractValidator
from tests.support.databases import DatabaseCopies
from tests.support.rig import MANAGEMENT_TOKEN, Rig, contract_for, migrate, vendor_strategies
from tests.support.servers import OpenBaoServer, PostgresServer, openbao_server, postgres_server
from tests.support.vault_proxy import VaultProxy


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def openbao() -> Iterator[OpenBaoServer]:
    with openbao_server() as server:
        yield server


@pytest.fixture
def vault_proxy(openbao: OpenBaoServer) -> Iterator[VaultProxy]:
    """A proxy in front of OpenBao that holds or fails chosen calls (``rig.vault_address``)."""
    proxy = VaultProxy(openbao.address)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def empty_databases(postgres: PostgresServer) -> Iterator[DatabaseCopies]:
    copies = DatabaseCopies(postgres, None, ahead=1)
    yield copies
    copies.close()


@pytest.fixture
def pg_url(postgres: PostgresServer, empty_databases: DatabaseCopies) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test."""
    name = empty_databases.take()
    yield postgres.url(name)
    empty_databases.finished(name)


@pytest.fixture(scope="session")
def migrated_template(postgres: PostgresServer) -> Iterator[str]:
    """A database migrated to the head revision once per session, for tests to copy."""
    name = f"template_{uuid.uuid4().hex[:12]}"
    migrate(postgres.create_database(name))
    yield name
    postgres.drop_database(name)


@pytest.fixture(scope="session")
def migrated_databases(
    postgres: PostgresServer, migrated_template: str
) -> Iterator[DatabaseCopies]:
    copies = DatabaseCopies(postgres, migrated_template)
    yield copies
    copies.close()


@pytest.fixture
def migrated_pg_url(postgres: PostgresServer, migrated_databases: DatabaseCopies) -> Iterator[str]:
    """A fresh PostgreSQL database for this test, already at the head revision."""
    name = migrated_databases.take()
    yield postgres.url(name)
    migrated_databases.finished(name)


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path / 'rotator.db'}"


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database file migrated to the head revision once per session, for tests to copy."""
    path = tmp_path_factory.mktemp("template") / "rotator.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def migrated_sqlite_url(tmp_path: Path, migrated_sqlite_template: Path) -> str:
    """A SQLite database file for this test, already at the head revision."""
    path = tmp_path / "rotator.db"
    shutil.copy(migrated_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on PostgreSQL and on SQLite."""
    fixture = "pg_url" if request.param == "postgresql" else "sqlite_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture(params=["postgresql", "sqlite"])
def migrated_database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on PostgreSQL and on SQLite, already at the head revision."""
    fixture = "migrated_pg_url" if request.param == "postgresql" else "migrated_sqlite_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def vault_prefix() -> str:
    """A Vault path prefix no other test uses."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=vendor_strategies(), ids=lambda p: f"{p[0]}-{p[1]}")
def vendor_strategy(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Every vendor, with every flow it supports: the shared suites run once per pair."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def rig(rig_factory: Callable[[str], Rig], vendor_strategy: tuple[str, str]) -> Rig:
    """A rig for the parametrised vendor; ``rig.strategy`` is the parametrised flow."""
    vendor, strategy = vendor_strategy
    built = rig_factory(vendor)
    built.strategy = strategy
    return built


@pytest.fixture
def rig_factory(
    tmp_path: Path, migrated_pg_url: str, openbao: OpenBaoServer, vault_prefix: str
) -> Iterator[Callable[[str], Rig]]:
    """Build a ``Rig`` for a vendor; fails the test on any contract violation."""
    started: list[tuple[EmulatorServer, ContractValidator | None]] = []

    def build(vendor: str) -> Rig:
        emulator_type = emulator_class(vendor)
        validator = contract_for(emulator_type)
        emulator = emulator_type({MANAGEMENT_TOKEN})
        server = EmulatorServer(emulator, validator=validator).start()
        started.append((server, validator))
        return Rig(tmp_path, migrated_pg_url, openbao, vendor, server, vault_prefix)

    yield build
    for server, validator in started:
        server.stop()
        if validator is not None:
            assert not validator.violations, "\n".join(validator.violations)
