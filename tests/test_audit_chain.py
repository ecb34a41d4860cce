"""The audit trail is tamper-evident: a hash chain that `rotator audit verify` recomputes."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from rotator.audit import migrations
from rotator.audit.records import SCHEMA_REVISION
from rotator.audit.store import AuditStore, event_hash
from rotator.log import configure_logging
from rotator.secret import Secret
from tests.support.cli import invoke
from tests.support.configs import config_text


@pytest.fixture
def store(migrated_database_url: str) -> AuditStore:
    return AuditStore.open(Secret(migrated_database_url))


def write_events(store: AuditStore, count: int, policy: str = "p", *, seal: bool = True) -> None:
    """Record ``count`` events; then (by default) wait until they are sealed into the chain."""
    for n in range(count):
        store.record_event(policy, "mint", "succeeded", details={"n": n, "key_id": f"k{n}"})
    if seal:
        store.seal()


def insert_unsealed_event(store: AuditStore) -> None:
    """An event committed by a process that was killed before its sealing pass."""
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_events (at, policy, step, outcome, actor, details) "
                "VALUES (:at, 'p', 'mint', 'started', 'crashed:1', '{}')"
            ),
            {"at": datetime.now(UTC).replace(tzinfo=None)},
        )


def test_an_untouched_chain_verifies(store: AuditStore) -> None:
    write_events(store, 20)
    report = store.verify_chain()
    assert report.intact
    assert report.checked == 20


def test_an_edited_row_is_caught_at_its_id(store: AuditStore) -> None:
    write_events(store, 10)
    victim = store.events()[4].id
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_events SET outcome = 'failed' WHERE id = :id"), {"id": victim}
        )
    report = store.verify_chain()
    assert report.broken_at == victim
    assert "changed after it was written" in str(report.problem)


def test_a_deleted_row_is_caught(store: AuditStore) -> None:
    write_events(store, 10)
    victim = store.events()[3].id
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": victim})
    report = store.verify_chain()
    assert report.broken_at == victim + 1
    assert "removed or inserted" in str(report.problem)


def test_concurrent_writers_keep_one_chain(store: AuditStore) -> None:
    threads = [
        threading.Thread(target=write_events, args=(store, 15, f"policy-{i}")) for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = store.verify_chain()
    assert report.intact
    assert report.checked == 60


def test_pruning_keeps_the_rest_of_the_chain_verifiable(store: AuditStore) -> None:
    write_events(store, 5)
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    pruned = store.prune(cutoff)
    write_events(store, 3)
    assert pruned == 5
    report = store.verify_chain()
    assert report.intact
    assert report.checked == 4  # the prune summary and three new events


def test_committed_events_are_sealed_moments_later_without_being_asked(
    store: AuditStore,
) -> None:
    write_events(store, 3, seal=False)
    deadline = time.monotonic() + 30
    while any(event.seq is None for event in store.events()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [event.seq for event in store.events()] == [1, 2, 3]
    assert all(event.hash for event in store.events())


def wait_until_sealed(store: AuditStore) -> None:
    deadline = time.monotonic() + 30
    while any(event.seq is None for event in store.events()) and time.monotonic() < deadline:
        time.sleep(0.05)


def sealer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "rotator-audit-sealer"]


def test_one_sealer_thread_serves_a_busy_store_pass_after_pass(store: AuditStore) -> None:
    earlier = set(sealer_threads())  # other stores' threads, ending once idle
    seen = set()
    for _ in range(3):
        write_events(store, 2, seal=False)
        wait_until_sealed(store)
        seen.update(set(sealer_threads()) - earlier)
    store.close()
    assert len(seen) == 1


def test_a_writer_does_not_wait_while_another_process_holds_the_chain_head(
    migrated_pg_url: str,
) -> None:
    store = AuditStore.open(Secret(migrated_pg_url))
    with store.engine.begin() as other_sealer:
        other_sealer.execute(text("SELECT * FROM audit_chain_head WHERE id = 1 FOR UPDATE"))
        writer = threading.Thread(target=write_events, args=(store, 3), kwargs={"seal": False})
        writer.start()
        writer.join(timeout=30)
        assert not writer.is_alive(), "the writer queued behind the chain head"
        assert [event.seq for event in store.events()] == [None, None, None]
    store.seal()
    assert [event.seq for event in store.events()] == [1, 2, 3]
    assert store.verify_chain().checked == 3


@pytest.fixture
def writer_without_seal_rights(
    migrated_pg_url: str,
) -> Iterator[tuple[AuditStore, AuditStore, str]]:
    """An admin store, and a store (and its URL) whose role may append events but not seal."""
    admin = AuditStore.open(Secret(migrated_pg_url))
    role = f"no_seal_{uuid.uuid4().hex[:8]}"
    with admin.engine.begin() as conn:
        for statement in (
            f"CREATE ROLE {role} LOGIN",
            f"GRANT SELECT, INSERT ON audit_events TO {role}",
            f"GRANT USAGE ON SEQUENCE audit_events_id_seq TO {role}",
            f"GRANT SELECT ON audit_chain_head, alembic_version TO {role}",
        ):
            conn.execute(text(statement))
    url = migrated_pg_url.replace("//postgres@", f"//{role}@")
    writer = AuditStore.open(Secret(url))
    yield admin, writer, url
    writer.dispose()
    with admin.engine.begin() as conn:
        conn.execute(text(f"DROP OWNED BY {role}"))
        conn.execute(text(f"DROP ROLE {role}"))
    admin.dispose()


def test_a_failed_sealing_pass_keeps_the_events_and_says_so(
    writer_without_seal_rights: tuple[AuditStore, AuditStore, str],
) -> None:
    admin, writer, _ = writer_without_seal_rights
    logs = io.StringIO()
    configure_logging(json=True, stream=logs)

    write_events(writer, 2, seal=False)
    deadline = time.monotonic() + 30
    while "audit_seal_deferred" not in logs.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.close()

    assert "audit_seal_deferred" in logs.getvalue()
    assert [event.seq for event in admin.events()] == [None, None]
    admin.seal()
    assert [event.seq for event in admin.events()] == [1, 2]
    assert admin.verify_chain().intact


def test_events_left_unsealed_by_a_crash_are_sealed_by_the_next_writer(store: AuditStore) -> None:
    insert_unsealed_event(store)
    write_events(store, 1)
    assert [event.seq for event in store.events()] == [1, 2]  # oldest first, crashed one too
    assert store.verify_chain().intact


def test_events_chained_before_sealing_existed_stay_verifiable_after_upgrade(
    database_url: str,
) -> None:
    store = AuditStore.open(Secret(database_url))
    migrations.upgrade(store.engine, "0002")
    prev = ""
    with store.engine.begin() as conn:
        for n in range(3):
            values = {
                "at": datetime(2026, 1, 1, n, tzinfo=UTC),
                "policy": "p",
                "rotation_id": None,
                "step": "mint",
                "outcome": "succeeded",
                "actor": "old:1",
                "details": {"n": n},
            }
            digest = event_hash(prev, values)
            conn.execute(
                text(
                    "INSERT INTO audit_events (at, policy, step, outcome, actor, details, "
                    "prev_hash, hash) VALUES (:at, 'p', 'mint', 'succeeded', 'old:1', :details, "
                    ":prev, :digest)"
                ),
                {
                    "at": values["at"].replace(tzinfo=None),
                    "details": json.dumps(values["details"]),
                    "prev": prev,
                    "digest": digest,
                },
            )
            prev = digest
        conn.execute(text("UPDATE audit_chain_head SET last_hash = :h"), {"h": prev})

    migrations.upgrade(store.engine)
    write_events(store, 2)

    report = store.verify_chain()
    assert report.intact
    assert report.checked == 5


def test_downgrading_below_sealing_is_refused_while_events_wait_to_be_sealed(
    store: AuditStore,
) -> None:
    insert_unsealed_event(store)

    with pytest.raises(RuntimeError, match="run `rotator audit seal`"):
        migrations.downgrade(store.engine, "0002")

    assert migrations.current_revision(store.engine) == SCHEMA_REVISION
    assert len(store.events()) == 1


def test_pruning_keeps_every_event_from_the_cutoff_on(store: AuditStore) -> None:
    write_events(store, 3)
    cutoff = store.events()[1].at

    assert store.prune(cutoff) == 1
    assert [event.details.get("n") for event in store.events()][:2] == [1, 2]


def cli(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rotator.yaml"
    path.write_text(config_text() + f"database: {{url: '{url}'}}\n")
    env = {"TEST_VAULT_TOKEN": "t-token-value", "TEST_DO_TOKEN": "do-token-value"}
    return invoke([*args, "-c", str(path)], env)


def test_audit_verify_exits_1_on_a_tampered_postgres_row(
    tmp_path: Path, migrated_pg_url: str
) -> None:
    store = AuditStore.open(Secret(migrated_pg_url))
    write_events(store, 5)
    assert cli(tmp_path, migrated_pg_url, "audit", "verify").returncode == 0
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET details = '{\"n\": 99}' WHERE id = 2"))

    result = cli(tmp_path, migrated_pg_url, "audit", "verify")

    assert result.returncode == 1
    assert "BROKEN at event 2" in result.stderr


def test_audit_prune_is_refused_without_force(tmp_path: Path, migrated_pg_url: str) -> None:
    store = AuditStore.open(Secret(migrated_pg_url))
    write_events(store, 3)

    result = cli(tmp_path, migrated_pg_url, "audit", "prune", "--before", "2999-01-01")

    assert result.returncode == 2
    assert "repeat with --force" in result.stderr
    assert len(store.events()) == 3


def test_audit_verify_needs_no_right_to_seal_and_seals_nothing(
    tmp_path: Path, writer_without_seal_rights: tuple[AuditStore, AuditStore, str]
) -> None:
    admin, writer, url = writer_without_seal_rights
    write_events(writer, 1, seal=False)

    result = cli(tmp_path, url, "audit", "verify")

    assert result.returncode == 0, result.stderr
    assert "1 events written in the last seconds wait to be sealed" in result.stderr
    assert [event.seq for event in admin.events()] == [None]
