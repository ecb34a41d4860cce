"""A process that lost its policy lock finds out before it acts, and writes nothing.

The lock is PostgreSQL's session advisory lock: a failover, a pooler or an idle
kill ends the session and frees the lock while the holder is still busy (here:
inside a vendor call, held open by the emulator). Every rotation write is
fenced by the row's ``fence``, and the lock is re-checked before every vendor
and Vault call, so the old holder stops instead of overwriting the new one's
work.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import get_type_hints

import psycopg
import pytest

from rotator.audit.connections import make_engine
from rotator.audit.records import PolicyState
from rotator.audit.rotation_state import PolicyStateChanges, RotationChanges
from rotator.audit.store import AuditStore, RotationRecord
from rotator.engine.lock import advisory_lock_ids
from rotator.errors import AuditStoreError, LockLost
from rotator.sandbox.server import Hold
from rotator.secret import Secret
from rotator.vocabulary import TERMINAL_STATES, State
from tests.support.forkserver import Child
from tests.support.rig import Rig, migrate


def _connect(database_url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"))


def terminate_lock_backend(database_url: str, policy: str) -> None:
    """End the PostgreSQL session holding ``policy``'s advisory lock, as a failover would."""
    classid, objid = advisory_lock_ids(policy)
    with _connect(database_url) as conn:
        conn.autocommit = True
        pids = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = %s AND objid = %s AND objsubid = 1",
                (classid, objid),
            )
        ]
        assert len(pids) == 1, f"expected one holder of the lock, found {pids}"
        # With a timeout it returns once the backend is gone and its locks with it; without,
        # the next process could still find the lock held.
        conn.execute("SELECT pg_terminate_backend(%s, 10000)", (pids[0],))


@contextmanager
def lock_held_elsewhere(database_url: str, policy: str) -> Iterator[None]:
    """Hold ``policy``'s advisory lock from another session, as another replica would."""
    classid, objid = advisory_lock_ids(policy)
    key = (classid << 32) | objid
    key = key - (1 << 64) if key >= 1 << 63 else key
    with _connect(database_url) as conn:
        conn.autocommit = True
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        yield
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def lose_the_lock_inside_the_mint_call(rig: Rig) -> tuple[Hold, Child]:
    """Start ``rotate now app``; while its mint call is held, end its lock's session.

    The vendor has made the key; the answer waits until the returned hold is released.
    """
    rig.provider_timeout = 60
    rig.add_policy("app", strategy=rig.strategy, grace="0s")
    operation = "regenerate" if rig.strategy == "regenerate" else "create"
    hold = rig.server.hold(*rig.emulator.operations[operation], after=True, resume=True)
    process = rig.spawn("rotate", "now", "app", "--json")
    hold.wait_arrived()
    terminate_lock_backend(rig.database_url, "app")
    return hold, process


def lost_lock_events(rig: Rig) -> list[str]:
    store = rig.store()
    events = [e.actor for e in store.events(policy="app", outcome="lost_lock")]
    store.dispose()
    return events


def test_a_process_that_lost_its_lock_stops_and_the_new_holder_completes(rig: Rig) -> None:
    hold, loser = lose_the_lock_inside_the_mint_call(rig)

    winner = rig.run("rotate", "now", "app", "--json")
    hold.release()
    stdout, stderr = loser.communicate(timeout=60)

    assert json.loads(winner.stdout)["result"] == "completed", winner.stderr
    assert loser.returncode == 1
    assert json.loads(stdout)["result"] == "lost_lock", stderr
    current = rig.vault_secret("app")
    assert rig.vendor_accepts("app", current), "Vault's current secret must work at the vendor"
    assert len(rig.live_keys("app")) == 1, rig.live_keys("app")
    assert rig.vault_metadata("app")["rotator.api_key.key_id"] == rig.live_keys("app")[0]
    assert len(lost_lock_events(rig)) == 1


def test_a_process_whose_lock_was_taken_makes_no_vault_write(rig: Rig) -> None:
    hold, loser = lose_the_lock_inside_the_mint_call(rig)
    spec = rig.policies["app"]

    with lock_held_elsewhere(rig.database_url, "app"):
        hold.release()
        stdout, stderr = loser.communicate(timeout=60)
        assert json.loads(stdout)["result"] == "lost_lock", stderr
        assert rig.vault_version("app") == 1
        assert rig.vault_secret("app") == spec.slot.secret
        assert len(lost_lock_events(rig)) == 1

    after = rig.run("rotate", "now", "app", "--json")

    assert json.loads(after.stdout)["result"] == "completed", after.stderr
    assert rig.vendor_accepts("app", rig.vault_secret("app"))
    assert len(rig.live_keys("app")) == 1


def lose_the_lock_with_no_competitor(rig: Rig) -> None:
    """Lose the lock inside the mint call, nobody else takes it, and the rotation completes."""
    hold, process = lose_the_lock_inside_the_mint_call(rig)
    hold.release()
    stdout, stderr = process.communicate(timeout=60)
    assert json.loads(stdout)["result"] == "completed", stderr


def test_a_lock_lost_with_no_competitor_is_taken_again_and_the_rotation_completes(
    rig: Rig,
) -> None:
    lose_the_lock_with_no_competitor(rig)

    assert rig.vendor_accepts("app", rig.vault_secret("app"))
    assert len(rig.live_keys("app")) == 1
    assert rig.vault_version("app") == 2


def test_a_lock_lost_during_a_call_is_found_by_the_next_write_before_it_records_anything(
    rig: Rig,
) -> None:
    lose_the_lock_with_no_competitor(rig)

    store = rig.store()
    steps = [(e.step, e.outcome) for e in store.events(policy="app")]
    store.dispose()
    # The mint's result went to the lock's lost session: the lock was taken again and the
    # rotation re-claimed before the result was recorded, under the new fence.
    assert steps.index(("fence", "claimed")) < steps.index(("mint", "succeeded")), steps


def test_the_lock_connection_uses_tcp_keepalives(pg_url: str) -> None:
    """Locks and transactions share the audit engine's connections, and so their keepalives."""
    engine = make_engine(Secret(pg_url))
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        assert raw is not None
        parameters = raw.info.get_parameters()
    engine.dispose()

    assert parameters["keepalives"] == "1"
    assert int(parameters["keepalives_idle"]) <= 60


_CREATED = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _rotation(letter: str) -> RotationRecord:
    """A planned rotation of policy ``app``, its id made of ``letter``."""
    return RotationRecord(
        **{f.name: None for f in fields(RotationRecord)}
        | {
            "id": letter * 32,
            "policy": "app",
            "provider": "sandbox",
            "strategy": "create_then_delete",
            "state": State.PLANNED,
            "emergency": False,
            "vault_path": "apps/app",
            "vault_field": "api_key",
            "needs_attention": False,
            "attempts": 0,
            "created_at": _CREATED,
            "updated_at": _CREATED,
            "fence": 0,
        }
    )


def test_a_policy_never_has_two_unfinished_rotations(database_url: str) -> None:
    migrate(database_url)
    store = AuditStore.open(Secret(database_url))
    first = _rotation("a")
    store.create_rotation(first, details={})

    with pytest.raises(LockLost, match="already has an unfinished rotation"):
        store.create_rotation(replace(first, id="b" * 32), details={})
    store.dispose()


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
def test_a_finished_rotation_does_not_count_as_the_policys_unfinished_one(
    database_url: str, terminal: State
) -> None:
    """The unique index's predicate (migration 0005) must treat every terminal state as done."""
    migrate(database_url)
    store = AuditStore.open(Secret(database_url))
    finished = replace(_rotation("a"), state=terminal)
    store.create_rotation(finished, details={})
    store.create_rotation(_rotation("b"), details={})
    assert store.active_rotation("app") == _rotation("b")
    store.dispose()


def test_a_rotation_in_a_state_this_version_does_not_know_is_refused_naming_it(
    database_url: str,
) -> None:
    migrate(database_url)
    store = AuditStore.open(Secret(database_url))
    store.create_rotation(replace(_rotation("a"), state="thawing"), details={})  # type: ignore[arg-type]

    with pytest.raises(AuditStoreError, match=f"rotation {'a' * 32} of policy app: 'thawing'"):
        store.active_rotation("app")
    store.dispose()


def test_a_step_changes_only_rotation_fields_and_never_the_identity_nor_the_fence() -> None:
    record = get_type_hints(RotationRecord)
    changes = get_type_hints(RotationChanges)

    assert {name: record[name] for name in changes} == changes
    assert not {"id", "policy", "provider", "strategy", "created_at", "fence"} & set(changes)


def test_a_policy_state_change_names_policy_state_fields_and_never_the_policy() -> None:
    record = get_type_hints(PolicyState)
    changes = get_type_hints(PolicyStateChanges)

    assert {name: record[name] for name in changes} == changes
    assert "policy" not in changes


def test_the_audit_trail_names_who_took_a_rotation_over_and_who_stopped(rig: Rig) -> None:
    hold, loser = lose_the_lock_inside_the_mint_call(rig)
    rig.run("rotate", "now", "app", "--json")
    hold.release()
    loser.communicate(timeout=60)

    claimed = rig.run("audit", "--policy", "app", "--outcome", "claimed", "--json")
    stopped = rig.run("audit", "--policy", "app", "--outcome", "lost_lock", "--json")

    assert claimed.returncode == 0, claimed.stderr
    assert [json.loads(line)["step"] for line in claimed.stdout.splitlines()] == ["fence"]
    assert stopped.returncode == 0, stopped.stderr
    assert len(stopped.stdout.splitlines()) == 1
