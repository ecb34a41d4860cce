"""Tamper evidence against someone who can write the audit database but not read Vault.

The chain is keyed with an HMAC key kept in Vault (KV v2) and anchored in Vault after each
sealing pass; `audit verify` never seals, and `--state` checks the rows that decide
revocations against the chain. Real PostgreSQL, SQLite and OpenBao throughout.
"""

from __future__ import annotations

import hmac
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from rotator.audit.chain import AnchorPoint, MacKey
from rotator.audit.pauses import pause_policy, resume_policy
from rotator.audit.store import AuditStore, RotationRecord, event_hash, utcnow
from rotator.audit.verify import verify
from rotator.chain_vault import VaultChainTrust, rotate_key
from rotator.config.model import AuditConfig, TokenAuth, VaultConfig
from rotator.secret import Secret
from rotator.vault import VaultStore
from rotator.vocabulary import State
from tests.support.cli import invoke
from tests.support.configs import config_text
from tests.support.rig import Rig
from tests.support.servers import OpenBaoServer
from tests.test_daemon import RunningDaemon, wait_until

StoreFactory = Callable[[], AuditStore]


@pytest.fixture
def audit_config(vault_prefix: str) -> AuditConfig:
    return AuditConfig(
        key_path=f"{vault_prefix}/audit/key", anchor_path=f"{vault_prefix}/audit/anchor"
    )


@pytest.fixture
def vault(openbao: OpenBaoServer) -> VaultStore:
    config = VaultConfig(address=openbao.address, auth=TokenAuth())
    return VaultStore(config, Secret(openbao.root_token))


@pytest.fixture
def open_keyed(
    migrated_database_url: str, vault: VaultStore, audit_config: AuditConfig
) -> Iterator[StoreFactory]:
    """Opens stores on one database, keyed with one Vault key (created here, version 1)."""
    assert audit_config.key_path is not None
    rotate_key(vault, audit_config.key_path)
    opened: list[AuditStore] = []

    def factory() -> AuditStore:
        store = AuditStore.open(
            Secret(migrated_database_url), trust=VaultChainTrust(lambda: vault, audit_config)
        )
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.dispose()


@pytest.fixture
def keyed(open_keyed: StoreFactory) -> AuditStore:
    return open_keyed()


def write_events(store: AuditStore, count: int, policy: str = "p") -> None:
    for n in range(count):
        store.record_event(policy, "mint", "succeeded", details={"n": n, "key_id": f"k{n}"})
    store.seal()


def rehash_chain(store: AuditStore, from_id: int) -> None:
    """What a database writer can do: recompute the hashes from an edited event on, the way
    the unkeyed chain does."""
    with store.engine.begin() as conn:
        rows = conn.execute(
            text(
                "SELECT id, at, policy, rotation_id, step, outcome, actor, details, prev_hash "
                "FROM audit_events WHERE id >= :id AND seq IS NOT NULL ORDER BY seq"
            ),
            {"id": from_id},
        ).all()
        prev = rows[0].prev_hash
        for row in rows:
            values = row._asdict()
            del values["prev_hash"]
            at = values["at"]
            if isinstance(at, str):
                at = datetime.fromisoformat(at)
            values["at"] = at if at.tzinfo else at.replace(tzinfo=UTC)
            if isinstance(values["details"], str):
                values["details"] = json.loads(values["details"])
            digest = event_hash(prev, values)
            conn.execute(
                text("UPDATE audit_events SET prev_hash = :p, hash = :h WHERE id = :id"),
                {"p": prev, "h": digest, "id": row.id},
            )
            prev = digest


def insert_raw_event(store: AuditStore, at: datetime) -> int:
    """A plain INSERT by someone with database access (no key, no seal)."""
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_events (at, policy, step, outcome, actor, details) "
                "VALUES (:at, 'p', 'revoke', 'succeeded', 'ops:1', '{\"key_id\": \"k1\"}')"
            ),
            {"at": at.replace(tzinfo=None) if store.dialect == "sqlite" else at},
        )
        return int(conn.execute(text("SELECT MAX(id) FROM audit_events")).scalar_one())


def test_an_edited_and_rehashed_row_is_caught(keyed: AuditStore) -> None:
    write_events(keyed, 6)
    victim = keyed.events()[2].id
    with keyed.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_events SET outcome = 'failed' WHERE id = :id"), {"id": victim}
        )
    rehash_chain(keyed, victim)

    report = keyed.verify_chain()

    assert not report.intact
    assert report.broken_at == victim


def test_a_backdated_unsealed_event_is_reported_and_left_unsealed_by_verify(
    migrated_database_url: str,
) -> None:
    writer = AuditStore.open(Secret(migrated_database_url))
    write_events(writer, 3)
    writer.close()  # no sealing pass of rotator's own is pending: verify is alone
    store = AuditStore.open(Secret(migrated_database_url))
    forged = insert_raw_event(store, datetime.now(UTC) - timedelta(days=3))

    report = store.verify_chain()

    assert not report.intact
    assert any(
        f"event {forged}" in problem and "unsealed" in problem for problem in report.problems
    )
    assert [e.seq for e in store.events() if e.id == forged] == [None]
    store.dispose()


def test_an_event_inserted_without_the_key_fails_verify_even_once_sealed(
    keyed: AuditStore,
) -> None:
    write_events(keyed, 2)
    forged = insert_raw_event(keyed, utcnow())
    write_events(keyed, 1)  # rotator's sealer seals whatever is committed, forged or not

    report = keyed.verify_chain()

    assert report.broken_at == forged
    assert "not written by rotator" in str(report.problem)


def test_a_replayed_copy_of_an_authentic_event_is_caught(keyed: AuditStore) -> None:
    write_events(keyed, 3)
    with keyed.engine.begin() as conn:
        conn.execute(text("DROP INDEX IF EXISTS ux_audit_events_mac"))
        conn.execute(
            text(
                "INSERT INTO audit_events (at, policy, rotation_id, step, outcome, actor, "
                "details, key_version, nonce, mac) SELECT at, policy, rotation_id, step, "
                "outcome, actor, details, key_version, nonce, mac FROM audit_events WHERE seq = 1"
            )
        )
    write_events(keyed, 1)

    report = keyed.verify_chain()

    assert not report.intact
    assert any("copy of event" in problem for problem in report.problems)


def test_the_database_refuses_a_copy_of_an_authentic_event(keyed: AuditStore) -> None:
    write_events(keyed, 1)

    with pytest.raises(IntegrityError), keyed.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO audit_events (at, policy, step, outcome, actor, details, key_version, "
                "nonce, mac) SELECT at, policy, step, outcome, actor, details, key_version, nonce, "
                "mac FROM audit_events WHERE seq = 1"
            )
        )


def test_deleting_the_newest_events_is_caught_by_the_vault_anchor(keyed: AuditStore) -> None:
    write_events(keyed, 5)
    with keyed.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq > 3"))
        conn.execute(text("UPDATE audit_chain_head SET last_seq = 3"))

    report = keyed.verify_chain()

    assert not report.intact
    assert any("Vault's anchor" in problem for problem in report.problems)


def test_emptying_the_whole_table_is_caught_by_the_vault_anchor(keyed: AuditStore) -> None:
    write_events(keyed, 3)
    with keyed.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events"))

    report = keyed.verify_chain()

    assert not report.intact
    assert any("Vault's anchor" in problem for problem in report.problems)


def test_a_missing_anchor_is_reported_not_ignored(
    keyed: AuditStore, vault: VaultStore, audit_config: AuditConfig
) -> None:
    write_events(keyed, 2)
    assert audit_config.anchor_path is not None
    vault.destroy(audit_config.anchor_path)

    report = keyed.verify_chain()

    assert not report.intact
    assert any("anchor" in problem and "missing" in problem for problem in report.problems)


def test_the_anchor_follows_the_chain_head_without_being_asked(
    keyed: AuditStore, audit_config: AuditConfig, vault: VaultStore
) -> None:
    for n in range(3):
        keyed.record_event("p", "mint", "succeeded", details={"n": n})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        anchor = VaultChainTrust(lambda: vault, audit_config).read_anchor()
        if anchor is not None and anchor.seq == 3:
            break
        time.sleep(0.1)

    assert anchor is not None
    assert (anchor.seq, anchor.hash) == (3, keyed.events()[-1].hash)


def test_events_sealed_after_a_truncation_do_not_hide_it(keyed: AuditStore) -> None:
    write_events(keyed, 5)
    with keyed.engine.begin() as conn:
        kept = conn.execute(text("SELECT hash FROM audit_events WHERE seq = 3")).scalar_one()
        conn.execute(text("DELETE FROM audit_events WHERE seq > 3"))
        conn.execute(text("UPDATE audit_chain_head SET last_seq = 3, last_hash = :h"), {"h": kept})
    write_events(keyed, 4)  # rotator goes on writing and sealing past the anchored position

    report = keyed.verify_chain()

    assert not report.intact
    assert any("Vault's anchor" in problem for problem in report.problems)


def test_deleting_the_oldest_events_is_caught(keyed: AuditStore) -> None:
    write_events(keyed, 4)
    with keyed.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq <= 2"))

    report = keyed.verify_chain()

    assert "removed or inserted" in str(report.problem)


def test_swapping_the_positions_of_two_events_is_caught(keyed: AuditStore) -> None:
    write_events(keyed, 4)
    with keyed.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET seq = -2 WHERE seq = 2"))
        conn.execute(text("UPDATE audit_events SET seq = 2 WHERE seq = 3"))
        conn.execute(text("UPDATE audit_events SET seq = 3 WHERE seq = -2"))

    assert not keyed.verify_chain().intact


def test_unkeyed_events_from_before_the_key_are_covered_by_the_first_keyed_one(
    migrated_database_url: str, open_keyed: StoreFactory
) -> None:
    unkeyed = AuditStore.open(Secret(migrated_database_url))
    write_events(unkeyed, 3)
    unkeyed.close()
    keyed = open_keyed()
    write_events(keyed, 2)
    first = keyed.events()[0].id
    with keyed.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_events SET outcome = 'failed' WHERE id = :id"), {"id": first}
        )
    rehash_chain(keyed, first)  # the unkeyed ones; the keyed ones cannot be re-chained

    report = keyed.verify_chain()

    assert report.broken_at == keyed.events()[3].id


def test_an_unreadable_key_version_is_reported(
    keyed: AuditStore, vault: VaultStore, audit_config: AuditConfig, migrated_database_url: str
) -> None:
    write_events(keyed, 2)
    assert audit_config.key_path is not None
    vault.destroy(audit_config.key_path)
    fresh = AuditStore.open(
        Secret(migrated_database_url), trust=VaultChainTrust(lambda: vault, audit_config)
    )

    report = fresh.verify_chain()

    assert "audit key version 1, which cannot be read" in str(report.problem)
    fresh.dispose()


def test_events_sealed_with_an_older_key_version_verify_after_the_key_is_rotated(
    open_keyed: StoreFactory, vault: VaultStore, audit_config: AuditConfig
) -> None:
    before = open_keyed()
    write_events(before, 3)
    assert audit_config.key_path is not None
    assert rotate_key(vault, audit_config.key_path) == 2
    after = open_keyed()
    write_events(after, 3)

    report = open_keyed().verify_chain()

    assert report.intact, report.problems
    assert report.checked == 6
    assert sorted({e.key_version for e in after.events()}) == [1, 2]


def test_a_running_process_takes_up_a_new_key_version(
    migrated_database_url: str,
    open_keyed: StoreFactory,
    vault: VaultStore,
    audit_config: AuditConfig,
) -> None:
    open_keyed()  # the schema, and key version 1
    trust = VaultChainTrust(lambda: vault, audit_config, refresh=0.2)
    store = AuditStore.open(Secret(migrated_database_url), trust=trust)
    write_events(store, 1)
    assert audit_config.key_path is not None
    rotate_key(vault, audit_config.key_path)
    time.sleep(0.3)
    write_events(store, 1)

    assert [e.key_version for e in store.events()] == [1, 2]
    assert store.verify_chain().intact
    store.dispose()


def test_an_authentic_event_a_stopped_process_left_unsealed_says_how_to_seal_it(
    keyed: AuditStore,
) -> None:
    with keyed.engine.begin() as conn:  # committed; the process stops before sealing
        keyed.record_event("p", "mint", "started", connection=conn)
    assert keyed.trust is not None
    with keyed.engine.begin() as conn:
        report = verify(conn, keyed.trust, now=utcnow() + timedelta(minutes=1))

    assert any("run 'rotator audit seal'" in p for p in report.problems)
    keyed.seal()
    assert keyed.verify_chain().intact


def test_pruning_keeps_a_keyed_chain_verifiable(keyed: AuditStore) -> None:
    write_events(keyed, 5)
    assert keyed.prune(datetime.now(UTC) + timedelta(seconds=1)) == 5
    assert keyed.verify_chain().intact  # the anchored events are gone; the summary vouches
    write_events(keyed, 2)

    report = keyed.verify_chain()

    assert report.intact, report.problems
    assert report.checked == 3


def rotation_record(rotation_id: str) -> RotationRecord:
    now = utcnow()
    return RotationRecord(
        id=rotation_id,
        policy="p",
        provider="sandbox",
        strategy="create_then_delete",
        state=State.PLANNED,
        emergency=False,
        old_key_id="k-old",
        new_key_id=None,
        new_key_name="rotator-p",
        new_secret_fingerprint=None,
        vault_path="apps/p",
        vault_field="api_key",
        vault_base_version=None,
        vault_version=None,
        grace_until=None,
        needs_attention=False,
        attempts=0,
        next_attempt_at=None,
        last_error=None,
        created_at=now,
        updated_at=now,
        completed_at=None,
    )


def run_a_rotation(store: AuditStore) -> RotationRecord:
    record = rotation_record(uuid.uuid4().hex)
    store.create_rotation(record, details={"trigger": "test"})
    record = store.update_rotation(
        record, step="mint", outcome="succeeded", state=State.MINTED, new_key_id="k-new"
    )
    record = store.update_rotation(
        record,
        step="finish",
        outcome="succeeded",
        policy_state={"current_key_id": "k-new", "vault_version": 2, "last_rotation_id": record.id},
        state=State.COMPLETED,
        completed_at=utcnow(),
    )
    store.seal()
    return record


def test_rows_that_match_the_chain_pass_the_state_check(keyed: AuditStore) -> None:
    run_a_rotation(keyed)

    report = keyed.verify_chain(state=True)

    assert report.intact, report.problems


def test_a_rolled_back_rotation_row_is_caught_by_the_state_check(keyed: AuditStore) -> None:
    record = run_a_rotation(keyed)
    with keyed.engine.begin() as conn:
        conn.execute(
            text("UPDATE rotations SET state = 'grace', old_key_id = 'k-victim' WHERE id = :id"),
            {"id": record.id},
        )

    report = keyed.verify_chain(state=True)

    assert not report.intact
    assert any(record.id in problem and "state" in problem for problem in report.problems)


def test_a_rolled_back_policy_state_row_is_caught_by_the_state_check(keyed: AuditStore) -> None:
    run_a_rotation(keyed)
    with keyed.engine.begin() as conn:
        conn.execute(text("UPDATE policy_state SET current_key_id = 'k-old' WHERE policy = 'p'"))

    report = keyed.verify_chain(state=True)

    assert not report.intact
    assert any("policy p" in problem and "current_key_id" in problem for problem in report.problems)


def test_a_finish_that_creates_the_policy_row_vouches_for_every_column(
    keyed: AuditStore,
) -> None:
    run_a_rotation(keyed)
    with keyed.engine.begin() as conn:
        conn.execute(text("UPDATE policy_state SET adopted_at = updated_at WHERE policy = 'p'"))

    report = keyed.verify_chain(state=True)

    assert any("policy p" in problem and "adopted_at" in problem for problem in report.problems)


def test_a_finish_over_an_adopted_policy_keeps_and_vouches_for_its_adoption(
    keyed: AuditStore,
) -> None:
    adopted = utcnow()
    keyed.set_policy_state("p", current_key_id="k-old", adopted_at=adopted)

    run_a_rotation(keyed)

    state = keyed.policy_state("p")
    assert state is not None
    assert (state.current_key_id, state.adopted_at) == ("k-new", adopted)
    assert keyed.verify_chain(state=True).intact


def test_a_policy_state_row_inserted_behind_rotators_back_is_caught(keyed: AuditStore) -> None:
    run_a_rotation(keyed)
    with keyed.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO policy_state (policy, current_key_id, updated_at) "
                "VALUES ('other', 'k-victim', :now)"
            ),
            {"now": utcnow().replace(tzinfo=None) if keyed.dialect == "sqlite" else utcnow()},
        )

    report = keyed.verify_chain(state=True)

    assert not report.intact
    assert any("policy other" in problem for problem in report.problems)


def test_pauses_and_resumes_rotator_wrote_pass_the_state_check(keyed: AuditStore) -> None:
    pause_policy(keyed, "p", reason="vendor outage", by="ops", until=None)
    pause_policy(keyed, "q", reason="freeze", by="ops", until=None)
    resume_policy(keyed, "q", by="ops")
    pause_policy(keyed, "q", reason="freeze again", by="ops", until=None)
    keyed.seal()

    report = keyed.verify_chain(state=True)

    assert report.intact, report.problems


def test_a_pause_inserted_behind_rotators_back_is_caught(keyed: AuditStore) -> None:
    run_a_rotation(keyed)
    with keyed.engine.begin() as conn:  # holds the policy's rotation back, silently
        conn.execute(
            text(
                "INSERT INTO policy_pauses (policy, reason, paused_by, paused_at) "
                "VALUES ('p', 'nothing to see', 'ops', :now)"
            ),
            {"now": utcnow().replace(tzinfo=None) if keyed.dialect == "sqlite" else utcnow()},
        )

    report = keyed.verify_chain(state=True)

    assert any("pause p" in problem for problem in report.problems), report.problems


def test_a_pause_deleted_behind_rotators_back_is_caught(keyed: AuditStore) -> None:
    pause_policy(keyed, "p", reason="vendor outage", by="ops", until=None)
    keyed.seal()
    with keyed.engine.begin() as conn:
        conn.execute(text("DELETE FROM policy_pauses WHERE policy = 'p'"))

    report = keyed.verify_chain(state=True)

    assert any("pause p" in problem and "gone" in problem for problem in report.problems)


def test_an_edited_pause_is_caught(keyed: AuditStore) -> None:
    pause_policy(keyed, "p", reason="vendor outage", by="ops", until=None)
    keyed.seal()
    with keyed.engine.begin() as conn:
        conn.execute(text("UPDATE policy_pauses SET paused_by = 'someone-else'"))

    report = keyed.verify_chain(state=True)

    assert any("pause p: paused_by" in problem for problem in report.problems)


def test_rows_from_before_the_key_are_checked_once_a_baseline_records_them(
    migrated_database_url: str, open_keyed: StoreFactory
) -> None:
    unkeyed = AuditStore.open(Secret(migrated_database_url))
    write_events(unkeyed, 2)
    with unkeyed.engine.begin() as conn:  # as rotator wrote it before events recorded rows
        conn.execute(
            text(
                "INSERT INTO policy_state (policy, current_key_id, updated_at) "
                "VALUES ('p', 'k-new', :now)"
            ),
            {"now": utcnow().replace(tzinfo=None) if unkeyed.dialect == "sqlite" else utcnow()},
        )
    unkeyed.close()
    keyed = open_keyed()
    assert any("audit baseline" in p for p in keyed.verify_chain(state=True).problems)

    assert keyed.record_baseline() == 1
    keyed.seal()
    assert keyed.verify_chain(state=True).intact
    with keyed.engine.begin() as conn:
        conn.execute(text("UPDATE policy_state SET current_key_id = 'k-old' WHERE policy = 'p'"))

    report = keyed.verify_chain(state=True)

    assert any("policy p: current_key_id is 'k-old'" in p for p in report.problems)


def test_rows_committed_a_moment_ago_match_the_event_that_waits_to_be_sealed(
    migrated_pg_url: str, vault: VaultStore, audit_config: AuditConfig
) -> None:
    assert audit_config.key_path is not None
    rotate_key(vault, audit_config.key_path)
    admin = AuditStore.open(
        Secret(migrated_pg_url), trust=VaultChainTrust(lambda: vault, audit_config)
    )
    role = f"no_seal_{uuid.uuid4().hex[:8]}"
    with admin.engine.begin() as conn:  # a writer whose sealing passes fail: nothing gets sealed
        for statement in (
            f"CREATE ROLE {role} LOGIN",
            f"GRANT SELECT, INSERT, UPDATE ON rotations, policy_state TO {role}",
            f"GRANT SELECT, INSERT ON audit_events TO {role}",
            f"GRANT USAGE ON SEQUENCE audit_events_id_seq TO {role}",
            f"GRANT SELECT ON audit_chain_head, alembic_version TO {role}",
        ):
            conn.execute(text(statement))
    writer = AuditStore.open(
        Secret(migrated_pg_url.replace("//postgres@", f"//{role}@")),
        trust=VaultChainTrust(lambda: vault, audit_config),
    )
    record = rotation_record(uuid.uuid4().hex)
    writer.create_rotation(record, details={"trigger": "test"})
    writer.update_rotation(record, step="mint", outcome="succeeded", state=State.MINTED)

    report = admin.verify_chain(state=True)

    assert report.intact, report.problems
    assert [event.seq for event in admin.events()] == [None, None]
    writer.dispose()
    with admin.engine.begin() as conn:
        conn.execute(text(f"DROP OWNED BY {role}"))
        conn.execute(text(f"DROP ROLE {role}"))
    admin.dispose()


# -- the command line ------------------------------------------------------------------------


def cli(
    tmp_path: Path, url: str, openbao: OpenBaoServer, audit: str, *args: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rotator.yaml"
    base = f"""
    vault:
      address: {openbao.address}
      auth: {{method: token, token: "${{TEST_VAULT_TOKEN}}"}}
    providers:
      do: {{type: digitalocean_gradient, token: "${{TEST_DO_TOKEN}}"}}
    """
    path.write_text(config_text(base=base) + f"database: {{url: '{url}'}}\n" + audit)
    env = {"TEST_VAULT_TOKEN": openbao.root_token, "TEST_DO_TOKEN": "do-token-value"}
    return invoke([*args, "-c", str(path)], env)


def test_audit_verify_exits_1_on_an_edited_and_rehashed_row(
    tmp_path: Path, keyed: AuditStore, openbao: OpenBaoServer, audit_config: AuditConfig
) -> None:
    write_events(keyed, 4)
    audit = (
        f"audit: {{key_path: {audit_config.key_path}, anchor_path: {audit_config.anchor_path}}}\n"
    )
    url = str(keyed.engine.url.render_as_string(hide_password=False))
    assert cli(tmp_path, url, openbao, audit, "audit", "verify").returncode == 0
    with keyed.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET details = '{\"n\": 99}' WHERE seq = 2"))
    rehash_chain(keyed, keyed.events()[1].id)

    result = cli(tmp_path, url, openbao, audit, "audit", "verify")

    assert result.returncode == 1
    assert "BROKEN" in result.stderr


def test_audit_rotate_key_starts_a_new_key_version(
    tmp_path: Path, sqlite_url: str, openbao: OpenBaoServer, vault_prefix: str
) -> None:
    audit = f"audit: {{key_path: {vault_prefix}/k, anchor_path: {vault_prefix}/a}}\n"

    first = cli(tmp_path, sqlite_url, openbao, audit, "audit", "rotate-key")
    second = cli(tmp_path, sqlite_url, openbao, audit, "audit", "rotate-key")

    assert first.returncode == 0, first.stderr
    assert "version 1" in first.stdout
    assert "version 2" in second.stdout
    response = httpx.get(
        f"{openbao.address}/v1/secret/data/{vault_prefix}/k",
        headers={"X-Vault-Token": openbao.root_token},
    )
    key = response.json()["data"]["data"]["key"]
    assert key not in first.stdout + first.stderr + second.stdout + second.stderr


def test_without_a_key_validate_and_verify_warn_that_the_chain_is_unkeyed(
    tmp_path: Path, sqlite_url: str, openbao: OpenBaoServer
) -> None:
    validate = cli(tmp_path, sqlite_url, openbao, "", "validate")
    cli(tmp_path, sqlite_url, openbao, "", "db", "upgrade")
    verify = cli(tmp_path, sqlite_url, openbao, "", "audit", "verify")

    assert validate.returncode == 0
    assert "audit.key_path" in validate.stderr
    assert verify.returncode == 0
    assert "UNKEYED" in verify.stderr


@pytest.mark.parametrize("key", [b"k" * 32, b"k" * 64, b"k" * 100, bytes(range(32))])
def test_the_precomputed_mac_is_standard_hmac_sha256(key: bytes) -> None:
    for message in (b"", b"event", b"x" * 1000):
        assert MacKey(key).hexdigest(message) == hmac.digest(key, message, "sha256").hex()


# -- with rotator running for real ------------------------------------------------------------


@pytest.fixture
def keyed_rig(rig_factory: Callable[[str], Rig], vault_prefix: str) -> Rig:
    """A rig with policy ``app`` whose audit chain is keyed (the key written by rotate-key)."""
    rig = rig_factory("digitalocean_gradient")
    rig.extra_config = (
        f"audit: {{key_path: {vault_prefix}/audit/key, anchor_path: {vault_prefix}/audit/anchor}}\n"
    )
    rig.add_policy("app", strategy="create_then_delete", grace="0s")
    assert rig.run("audit", "rotate-key").returncode == 0
    return rig


def test_a_keyed_rotation_verifies_and_its_rows_match_the_chain(keyed_rig: Rig) -> None:
    assert keyed_rig.run("rotate", "now", "app").returncode == 0

    result = keyed_rig.run("audit", "verify", "--state")

    assert result.returncode == 0, result.stderr
    assert "intact (keyed, anchored in Vault)" in result.stdout
    assert "rows match it" in result.stdout


def test_a_rotation_rolled_back_in_the_database_is_caught_by_verify_state(
    keyed_rig: Rig,
) -> None:
    assert keyed_rig.run("rotate", "now", "app").returncode == 0
    store = keyed_rig.store()
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE policy_state SET current_key_id = 'someone-elses-key'"))
    store.dispose()

    result = keyed_rig.run("audit", "verify", "--state")

    assert result.returncode == 1
    assert "policy app: current_key_id is 'someone-elses-key'" in result.stderr


def test_rotating_without_the_audit_key_in_vault_fails_before_any_vendor_call(
    rig_factory: Callable[[str], Rig], vault_prefix: str
) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.extra_config = f"audit: {{key_path: {vault_prefix}/no-such-key}}\n"
    spec = rig.add_policy("app", strategy="create_then_delete")

    result = rig.run("rotate", "now", "app")

    assert result.returncode != 0
    assert "there is no audit key" in result.stdout + result.stderr
    assert "rotate-key" in result.stdout + result.stderr
    assert rig.emulator.live_key_ids(spec.slot.selector) == [spec.slot.key_id]


def test_the_daemon_keeps_a_keyed_chain_anchored_while_it_rotates(
    rig_factory: Callable[[str], Rig], vault_prefix: str, vault: VaultStore
) -> None:
    rig = rig_factory("digitalocean_gradient")
    daemon = RunningDaemon(rig)
    audit = AuditConfig(key_path=f"{vault_prefix}/audit/key", anchor_path=f"{vault_prefix}/anchor")
    rig.extra_config += f"audit: {{key_path: {audit.key_path}, anchor_path: {audit.anchor_path}}}\n"
    rig.add_policy("app", strategy="create_then_delete", grace="0s", every="1s")
    assert rig.run("audit", "rotate-key").returncode == 0
    daemon.start()
    try:
        wait_until(lambda: rig.completed_rotations("app") >= 2)
        store = rig.store()
        trust = VaultChainTrust(lambda: vault, audit)
        wait_until(lambda: any(e.seq for e in store.events()))
        sealed = max(e.seq or 0 for e in store.events())
        # The running daemon anchors what it sealed, without being asked.
        wait_until(lambda: (trust.read_anchor() or AnchorPoint(0, "")).seq >= sealed)
    finally:
        code, _ = daemon.stop()
    anchor = trust.read_anchor()
    head = max((e for e in store.events() if e.seq), key=lambda e: e.seq or 0)
    store.dispose()

    assert anchor is not None
    assert (anchor.seq, anchor.hash) == (head.seq, head.hash)  # stopping anchors the rest
    result = rig.run("audit", "verify", "--state")

    assert code == 0
    assert result.returncode == 0, result.stderr
    assert "intact (keyed, anchored in Vault)" in result.stdout


def test_validate_online_checks_that_the_audit_key_can_be_read(keyed_rig: Rig) -> None:
    good = keyed_rig.run("validate", "--online")
    keyed_rig.extra_config = "audit: {key_path: nowhere/key}\n"
    keyed_rig.write_config()
    missing = keyed_rig.run("validate", "--online")

    assert good.returncode == 0, good.stdout
    assert "audit key" in good.stdout
    assert "version 1" in good.stdout
    assert missing.returncode == 2
    assert "FAIL audit key: there is no audit key at nowhere/key" in missing.stdout
