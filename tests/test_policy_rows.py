"""What the engine reads before a rotation: a policy's pause, unfinished rotation and state,
as one statement (``AuditStore.policy_rows``), on PostgreSQL and SQLite, under the lock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import Connection, event

from rotator.audit.pauses import pause_in_force, pause_policy
from rotator.audit.store import AuditStore, RotationRecord
from rotator.engine.lock import advisory_lock_ids
from rotator.secret import Secret
from rotator.vocabulary import Result, State
from tests.support.rig import Rig
from tests.test_audit_tamper import rotation_record


@pytest.fixture
def store(migrated_database_url: str) -> Iterator[AuditStore]:
    opened = AuditStore.open(Secret(migrated_database_url))
    yield opened
    opened.close()


def planned(rotation_id: str, policy: str = "web") -> RotationRecord:
    return replace(rotation_record(rotation_id), policy=policy)


def test_a_policy_never_seen_has_no_pause_no_rotation_and_no_state(store: AuditStore) -> None:
    rows = store.policy_rows("web")

    assert (rows.pause, rows.active, rows.state) == (None, None, None)


def test_the_pause_the_unfinished_rotation_and_the_state_are_those_read_one_by_one(
    store: AuditStore,
) -> None:
    store.set_policy_state("web", current_key_id="k1", vault_version=3)
    pause_policy(store, "web", reason="INC-3", by="alice", until=None)
    store.create_rotation(planned("a" * 32), details={})

    rows = store.policy_rows("web")

    assert rows.pause == pause_in_force(store, "web", datetime.now(UTC))
    assert rows.active == store.active_rotation("web")
    assert rows.state == store.policy_state("web")
    assert rows.state is not None
    assert rows.state.current_key_id == "k1"


def test_a_finished_rotation_is_not_the_unfinished_one(store: AuditStore) -> None:
    done = planned("a" * 32)
    store.create_rotation(done, details={})
    store.update_rotation(done, step="finish", outcome="succeeded", state=State.COMPLETED)

    assert store.policy_rows("web").active is None


def test_another_policys_rows_are_not_read(store: AuditStore) -> None:
    store.set_policy_state("api", current_key_id="k1")
    pause_policy(store, "api", reason="INC-3", by="alice", until=None)
    store.create_rotation(planned("a" * 32, policy="api"), details={})

    rows = store.policy_rows("web")

    assert (rows.pause, rows.active, rows.state) == (None, None, None)


def test_a_pause_that_ended_is_read_but_does_not_hold(store: AuditStore) -> None:
    now = datetime.now(UTC)
    pause_policy(store, "web", reason="INC-3", by="alice", until=now + timedelta(minutes=5))

    rows = store.policy_rows("web")

    assert rows.pause is not None
    assert rows.pause_at(now) == rows.pause
    assert rows.pause_at(now + timedelta(minutes=6)) is None


def test_the_three_are_read_in_one_statement(store: AuditStore) -> None:
    store.set_policy_state("web", current_key_id="k1")
    pause_policy(store, "web", reason="INC-3", by="alice", until=None)
    store.create_rotation(planned("a" * 32), details={})
    statements: list[str] = []
    reader = threading.get_ident()

    def seen(*args: Any) -> None:
        if threading.get_ident() == reader:  # not the sealer's, on its timer thread
            statements.append(args[2])

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        store.policy_rows("web")
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)

    assert len(statements) == 1


@pytest.fixture
def rig(rig_factory: Callable[[str], Rig]) -> Rig:
    built = rig_factory("digitalocean_gradient")
    built.add_policy("app", strategy="create_then_delete", grace="0s", every="1d")
    return built


def holds_lock(rig: Rig, backend: int, policy: str) -> bool:
    """Whether the PostgreSQL session ``backend`` holds ``policy``'s advisory lock now."""
    classid, objid = advisory_lock_ids(policy)
    url = rig.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = %s AND classid = %s AND objid = %s",
            (backend, classid, objid),
        ).fetchone()
    return row is not None and row[0] == 1


@pytest.mark.parametrize("trigger", ["now", "schedule"])
def test_a_rotation_reads_its_policy_once_before_planning_on_the_session_holding_its_lock(
    rig: Rig, trigger: str
) -> None:
    engine = rig.engine(clock=lambda: datetime.now(UTC) + timedelta(days=2))
    rotating = threading.get_ident()
    reads: list[tuple[str, bool]] = []

    def seen(connection: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        # The step writes and lock checks go to the driver directly: what passes here on
        # the rotating thread are the reads.
        if threading.get_ident() == rotating and statement.startswith("SELECT"):
            backend = connection.connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
            reads.append((statement.split(",")[0], holds_lock(rig, backend, "app")))

    event.listen(engine.store.engine, "before_cursor_execute", seen)
    try:
        rotate = engine.rotate_now if trigger == "now" else engine.rotate_if_due
        outcome = rotate("app")
    finally:
        event.remove(engine.store.engine, "before_cursor_execute", seen)
        engine.close()

    assert outcome.result is Result.COMPLETED, outcome.message
    assert reads == [("SELECT policy_pauses.policy AS p_policy", True)]
