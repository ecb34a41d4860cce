"""The audit database's connection pool survives connections the server closes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime

import psycopg
import pytest

from rotator.audit.connections import PING_AFTER_IDLE
from rotator.audit.store import AuditStore, RotationRecord
from rotator.errors import AuditStoreError
from rotator.secret import Secret
from rotator.vocabulary import State, Strategy


@pytest.fixture
def store(migrated_pg_url: str) -> Iterator[AuditStore]:
    opened = AuditStore.open(Secret(migrated_pg_url))
    yield opened
    opened.close()


def close_every_other_session(pg_url: str) -> None:
    """What a database restart, a failover or a proxy's idle timeout does to pooled connections."""
    with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
        c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_a_connection_closed_while_idle_is_replaced_unnoticed(
    store: AuditStore, migrated_pg_url: str
) -> None:
    store.record_event("p", "mint", "succeeded")
    close_every_other_session(migrated_pg_url)
    time.sleep(PING_AFTER_IDLE + 0.2)

    store.record_event("p", "store", "succeeded")

    assert [e.step for e in store.events(policy="p")] == ["mint", "store"]


def test_a_connection_closed_right_after_use_fails_one_statement_then_recovers(
    store: AuditStore, migrated_pg_url: str
) -> None:
    store.record_event("p", "mint", "succeeded")
    time.sleep(0.3)  # the sealing pass after that commit is over; nothing else uses the pool
    close_every_other_session(migrated_pg_url)

    with pytest.raises(AuditStoreError, match="cannot use the audit database"):
        store.record_event("p", "store", "succeeded")
    store.record_event("p", "store", "succeeded")

    assert [e.step for e in store.events(policy="p")] == ["mint", "store"]


def test_a_step_write_on_a_connection_closed_right_after_use_fails_once_then_recovers(
    store: AuditStore, migrated_pg_url: str
) -> None:
    """A step's write is sent on the driver's connection (rotator/audit/driver.py): a lost
    one is still reported as the audit database's failure, and replaced."""
    now = datetime.now(UTC)
    planned = RotationRecord(
        **dict.fromkeys((f.name for f in fields(RotationRecord)), None)
        | {
            "id": "a" * 32,
            "policy": "p",
            "provider": "sandbox",
            "strategy": Strategy.CREATE_THEN_DELETE,
            "state": State.PLANNED,
            "emergency": False,
            "vault_path": "apps/p",
            "vault_field": "api_key",
            "needs_attention": False,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
            "fence": 0,
        }
    )
    store.create_rotation(planned, details={})
    time.sleep(0.3)  # the sealing pass after that write is over; nothing else uses the pool
    close_every_other_session(migrated_pg_url)

    with pytest.raises(AuditStoreError, match="cannot use the audit database"):
        store.update_rotation(planned, step="mint", outcome="started", state=State.MINTING)
    store.update_rotation(planned, step="mint", outcome="started", state=State.MINTING)

    assert [e.step for e in store.events(policy="p")] == ["plan", "mint"]
    resumed = store.active_rotation("p")
    assert resumed is not None
    assert resumed.state == State.MINTING
