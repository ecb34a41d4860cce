"""Rolling back during grace: ``rotator rollback`` puts the old key back while it still lives.

CLI-level over PostgreSQL, OpenBao and every vendor's emulator.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import REGISTRY

from rotator.metrics import PrometheusRecorder
from rotator.recorder import install
from rotator.vocabulary import Result
from tests.support.kills import KillPoint, hold_at
from tests.support.rig import MANAGEMENT_TOKEN, PolicySpec, Rig, vendors_supporting
from tests.support.vault_proxy import VaultProxy
from tests.support.webhook import WebhookReceiver
from tests.test_consumers import policy_with
from tests.test_latitudesh_self_rotation import own_token_rig

RigFactory = Callable[[str], Rig]
REASON = "checkout service fails with the new key"


@pytest.fixture(params=vendors_supporting("create_then_delete"))
def grace_rig(request: pytest.FixtureRequest, rig_factory: RigFactory) -> Rig:
    """A rig for each vendor whose rotations wait in grace (create, then delete)."""
    return rig_factory(request.param)


def rotated_into_grace(rig: Rig, grace: str = "1h", every: str = "30d") -> PolicySpec:
    spec = rig.add_policy("app", strategy="create_then_delete", grace=grace, every=every)
    done = rig.run("rotate", "now", "app", "--json")
    assert json.loads(done.stdout)["result"] == "waiting", done.stderr
    return spec


def roll_back(
    rig: Rig, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return rig.run("rollback", "app", *args, env=env)


def last_rotation(rig: Rig) -> object:
    store = rig.store()
    rotations = store.rotations_for("app")
    store.dispose()
    return rotations[-1]


def new_key_of(rig: Rig, spec: PolicySpec) -> str:
    [new] = [k for k in rig.live_keys("app") if k != spec.slot.key_id]
    return new


def test_rollback_during_grace_makes_the_old_secret_vaults_current_version_again(
    grace_rig: Rig,
) -> None:
    spec = rotated_into_grace(grace_rig)

    done = roll_back(grace_rig, "--yes", "--reason", REASON)

    assert done.returncode == 0, done.stderr
    assert grace_rig.vault_secret("app") == spec.slot.secret
    assert grace_rig.vault_version("app") == 3, "a new version on top of rotator's"
    assert grace_rig.vault_metadata("app")["rotator.api_key.key_id"] == spec.slot.key_id


def test_rollback_revokes_the_new_key_and_keeps_the_old_key_live(grace_rig: Rig) -> None:
    spec = rotated_into_grace(grace_rig)
    new_key = new_key_of(grace_rig, spec)

    assert roll_back(grace_rig, "--yes").returncode == 0

    assert grace_rig.live_keys("app") == [spec.slot.key_id]
    assert new_key not in grace_rig.live_keys("app")
    assert grace_rig.vendor_accepts("app", spec.slot.secret)


def test_rollback_lifts_the_expiry_the_vendor_was_given_for_grace(rig_factory: RigFactory) -> None:
    rig = rig_factory("h2ogpte")
    spec = rotated_into_grace(rig)
    assert rig.emulator.expiry_of(spec.slot.key_id) is not None  # type: ignore[attr-defined]

    assert roll_back(rig, "--yes").returncode == 0

    assert rig.emulator.expiry_of(spec.slot.key_id) is None  # type: ignore[attr-defined]


def test_rollback_marks_the_rotation_rolled_back_with_actor_and_reason(grace_rig: Rig) -> None:
    rotated_into_grace(grace_rig)

    # A process of its own: the audit trail reads its actor once per process.
    grace_rig.run_process(
        "rollback", "app", "--yes", "--reason", REASON, env={"ROTATOR_ACTOR": "alice"}
    )

    rotation = last_rotation(grace_rig)
    assert rotation.state == "rolled_back"  # type: ignore[attr-defined]
    assert rotation.rollback_reason == REASON  # type: ignore[attr-defined]
    assert rotation.rolled_back_by.startswith("alice on ")  # type: ignore[attr-defined]
    store = grace_rig.store()
    [requested] = [e for e in store.events(policy="app") if e.outcome == "requested"]
    store.dispose()
    assert requested.step == "rollback"
    assert requested.actor.startswith("alice on ")
    assert requested.details["reason"] == REASON


def test_after_a_rollback_status_shows_the_old_key_as_current(grace_rig: Rig) -> None:
    spec = rotated_into_grace(grace_rig)
    roll_back(grace_rig, "--yes")

    [row] = [json.loads(line) for line in grace_rig.run("status", "--json").stdout.splitlines()]

    assert row["current_key_id"] == spec.slot.key_id
    assert row["in_flight"] is None
    assert row["last_outcome"] == "rolled_back"


def test_after_a_rollback_plan_shows_the_old_key_as_current(grace_rig: Rig) -> None:
    spec = rotated_into_grace(grace_rig)
    roll_back(grace_rig, "--yes")

    [entry] = [json.loads(line) for line in grace_rig.run("plan", "--json").stdout.splitlines()]

    assert entry["current_key"]["key_id"] == spec.slot.key_id
    assert entry["in_flight"] is None
    assert not entry["due_now"], "the schedule counts from the rollback"


def test_after_a_rollback_the_next_scheduled_rotation_proceeds_normally(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("scale_agentex")
    rig.add_policy("app", strategy="create_then_delete", grace="1h", every="1d")
    first = json.loads(rig.run("rotate", "now", "app", "--emergency", "--json").stdout)
    # A day on, the first rotation is due again: the schedule started this rotation.
    with rig.engine_ahead(days=1, minutes=1) as engine:
        assert engine.rotate_if_due("app").result is Result.WAITING
        assert engine.roll_back("app", reason=REASON).result is Result.ROLLED_BACK

        assert engine.rotate_if_due("app").result is Result.NOT_DUE
    due = rig.later("app", days=2, minutes=2)

    assert due.result is Result.WAITING
    assert due.new_key_id != first["new_key_id"]
    assert rig.vault_version("app") == 5
    assert rig.vault_metadata("app")["rotator.api_key.key_id"] == due.new_key_id


def test_rollback_after_grace_is_refused_with_exit_2(grace_rig: Rig) -> None:
    spec = grace_rig.add_policy("app", strategy="create_then_delete", grace="0s")
    grace_rig.run("rotate", "now", "app")
    before = grace_rig.vault_version("app")

    refused = roll_back(grace_rig, "--yes")

    assert refused.returncode == 2
    assert "no rotation of app is in grace" in refused.stderr
    assert f"revoked its old key {spec.slot.key_id}" in refused.stderr
    assert "rotator rotate now app" in refused.stderr
    assert grace_rig.vault_version("app") == before


def test_rollback_with_no_rotation_is_refused_with_exit_2(grace_rig: Rig) -> None:
    grace_rig.add_policy("app", strategy="create_then_delete")

    refused = roll_back(grace_rig, "--yes")

    assert refused.returncode == 2
    assert "has no rotation to roll back" in refused.stderr


@pytest.mark.parametrize("vendor", vendors_supporting("regenerate"))
def test_rollback_of_a_regenerate_in_place_policy_is_refused(
    rig_factory: RigFactory, vendor: str
) -> None:
    rig = rig_factory(vendor)
    rig.add_policy("app", strategy="regenerate")

    refused = roll_back(rig, "--yes")

    assert refused.returncode == 2
    assert "regenerates its key in place" in refused.stderr
    assert "no old key to go back to" in refused.stderr


@pytest.mark.parametrize("action", ["delete", "destroy"])
def test_rollback_is_refused_when_vault_lost_the_old_version(
    rig_factory: RigFactory, action: str
) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rotated_into_grace(rig)
    rig.vault_api("POST", f"secret/{action}/{spec.vault_path}", {"versions": [1]})

    refused = roll_back(rig, "--yes")

    assert refused.returncode == 2
    assert "version 1 of" in refused.stderr
    assert "deleted or destroyed" in refused.stderr
    assert rig.vault_version("app") == 2
    assert len(rig.live_keys("app")) == 2


def test_rollback_is_refused_when_someone_wrote_vault_since_the_rotation(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("scale_agentex")
    spec = rotated_into_grace(rig)
    rig.vault_api("POST", f"secret/data/{spec.vault_path}", {"data": {"api_key": "by-hand"}})

    refused = roll_back(rig, "--yes")

    assert refused.returncode == 2
    assert "someone wrote the secret since" in refused.stderr
    assert rig.vault_secret("app") == "by-hand"


def test_rollback_without_yes_and_without_a_terminal_is_refused(rig_factory: RigFactory) -> None:
    rig = rig_factory("scale_agentex")
    rotated_into_grace(rig)

    refused = roll_back(rig)

    assert refused.returncode == 2
    assert "pass --yes" in refused.stderr
    assert last_rotation(rig).state == "grace"  # type: ignore[attr-defined]


def test_rollback_on_a_terminal_asks_first_and_does_nothing_when_declined(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("scale_agentex")
    spec = rotated_into_grace(rig)

    asked = subprocess.run(
        ["script", "-qec", f"{sys.executable} -m rotator rollback app", "/dev/null"],
        input="n\n",
        capture_output=True,
        text=True,
        env=rig.env,
        timeout=120,
    )

    assert "Roll back?" in asked.stdout
    assert f"revoke the new key {new_key_of(rig, spec)}" in asked.stdout
    assert last_rotation(rig).state == "grace"  # type: ignore[attr-defined]


def test_rollback_is_notified_without_the_secret(grace_rig: Rig) -> None:
    receiver = WebhookReceiver()
    try:
        spec = grace_rig.add_policy("app", strategy="create_then_delete", grace="1h")
        grace_rig.extra_config = f"""
        notifications:
          webhooks:
            ops: {{url: "{receiver.url}", format: json}}
        """
        grace_rig.write_config()
        grace_rig.run("rotate", "now", "app")
        new_secret = grace_rig.vault_secret("app")

        roll_back(grace_rig, "--yes", "--reason", REASON)
    finally:
        receiver.stop()
    [sent] = receiver.received
    assert sent["result"] == "rolled_back"
    assert spec.slot.key_id in sent["message"]
    assert REASON in sent["message"]
    for secret in (spec.slot.secret, new_secret):
        assert secret not in json.dumps(receiver.received)


@pytest.fixture
def prometheus_recorder() -> Iterator[None]:
    """Rotations recorded into Prometheus, as in the daemon, for this test only."""
    previous = install(PrometheusRecorder())
    yield
    install(previous)


@pytest.mark.usefixtures("prometheus_recorder")
def test_rollback_is_counted_in_the_rotations_metric(rig_factory: RigFactory) -> None:
    rig = rig_factory("scale_agentex")
    rotated_into_grace(rig)
    labels = {
        "policy": "app",
        "provider": "sandbox",
        "provider_type": "scale_agentex",
        "outcome": "rolled_back",
    }
    before = REGISTRY.get_sample_value("rotator_rotations_total", labels) or 0.0
    engine = rig.engine()
    try:
        outcome = engine.roll_back("app", reason=REASON)
    finally:
        engine.close()

    assert outcome.result.value == "rolled_back"
    assert REGISTRY.get_sample_value("rotator_rotations_total", labels) == before + 1


def test_rollback_of_rotators_own_token_authenticates_with_the_old_token_again(
    rig_factory: RigFactory,
) -> None:
    rig = own_token_rig(rig_factory)
    rig.config_path.write_text(
        rig.config_path.read_text().replace("grace_period: 0s", "grace_period: 1h")
    )
    before = set(rig.live_keys("own"))
    assert json.loads(rig.run("rotate", "now", "own", "--json").stdout)["result"] == "waiting"

    done = rig.run("rollback", "own", "--yes")

    assert done.returncode == 0, done.stderr
    assert rig.vault_secret("own") == MANAGEMENT_TOKEN
    assert set(rig.live_keys("own")) == before
    again = rig.run("rotate", "now", "own", "--json")
    assert json.loads(again.stdout)["result"] == "waiting", again.stderr


def test_rollback_of_an_emergency_rotation_is_refused(rig_factory: RigFactory) -> None:
    rig = rig_factory("scale_agentex")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="1h")
    method, path = rig.emulator.operations["revoke"]
    hold = rig.server.hold(method, path, after=False)
    killed = rig.spawn("rotate", "now", "app", "--emergency")
    hold.wait_arrived()
    rig.kill(killed)
    hold.release()
    assert spec.slot.key_id in rig.live_keys("app"), "killed before the leaked key was revoked"

    refused = roll_back(rig, "--yes")

    assert refused.returncode == 2
    assert "emergency rotation" in refused.stderr
    assert "does not put a leaked key back" in refused.stderr


def test_rollback_of_a_rotation_that_has_not_reached_grace_is_refused(
    rig_factory: RigFactory, vault_proxy: VaultProxy
) -> None:
    rig = rig_factory("scale_agentex")
    rig.vault_address = vault_proxy.address
    spec = rig.add_policy("app", strategy="create_then_delete", grace="1h")
    hold = hold_at(rig, vault_proxy, KillPoint("vault", "write", after=False))
    killed = rig.spawn("rotate", "now", "app")
    hold.wait_arrived()
    rig.kill(killed)
    hold.release()

    refused = roll_back(rig, "--yes")

    assert refused.returncode == 2
    assert "not in grace" in refused.stderr
    assert "rotator rotate now app" in refused.stderr
    assert rig.vault_secret("app") == spec.slot.secret


def test_rollback_runs_the_after_store_hooks_again_naming_the_old_key(
    rig_factory: RigFactory,
) -> None:
    receiver = WebhookReceiver()
    try:
        rig = policy_with(
            rig_factory("digitalocean_gradient"),
            "app",
            f"hooks: {{after_store: [{{notify: {{url: {receiver.url}}}}}]}}",
        )
        spec = rig.policies["app"]
        assert json.loads(rig.run("rotate", "now", "app", "--json").stdout)["result"] == "waiting"
        new_key = new_key_of(rig, spec)

        assert roll_back(rig, "--yes").returncode == 0
    finally:
        receiver.stop()
    stored, rolled_back = receiver.received
    assert stored["event"] == "stored"
    assert rolled_back["event"] == "rolled_back"
    assert rolled_back["key_id"] == spec.slot.key_id
    assert rolled_back["old_key_id"] == new_key
    assert rolled_back["vault"]["version"] == 3
    assert spec.slot.secret not in json.dumps(rolled_back)
    store = rig.store()
    hooks = [e.details["hook"] for e in store.events(policy="app") if e.step == "hook"]
    store.dispose()
    assert hooks == ["after_store[0] notify", "after_rollback[0] notify"]


def test_after_a_rollback_reconcile_finds_no_drift_and_no_orphan(grace_rig: Rig) -> None:
    rotated_into_grace(grace_rig)
    roll_back(grace_rig, "--yes")

    [found] = [
        json.loads(line) for line in grace_rig.run("reconcile", "--json").stdout.splitlines()
    ]

    assert found["drift"] == []
    assert found["orphans"] == []


def test_a_vendor_outage_during_rollback_fails_it_and_running_it_again_finishes_it(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("scale_agentex")
    rig.provider_settings = {"retry_for": "0s"}  # the outage fails the call at once
    spec = rotated_into_grace(rig)
    method, path = rig.emulator.operations["revoke"]
    rig.server.fail(method, path, status=503, times=10_000)

    failed = roll_back(rig, "--yes", "--json")

    assert failed.returncode == 1
    assert json.loads(failed.stdout)["result"] == "failed"
    assert rig.vault_secret("app") == spec.slot.secret, "the old key is back in Vault already"
    assert last_rotation(rig).state == "reverting"  # type: ignore[attr-defined]

    rig.server.clear()
    again = roll_back(rig, "--yes", "--json")

    assert json.loads(again.stdout)["result"] == "rolled_back", again.stderr
    assert rig.live_keys("app") == [spec.slot.key_id]
    assert rig.vault_version("app") == 3


def test_a_reason_quoting_a_secret_never_stores_or_prints_it(rig_factory: RigFactory) -> None:
    rig = rig_factory("scale_agentex")
    spec = rotated_into_grace(rig)
    new_secret = rig.vault_secret("app")

    done = roll_back(rig, "--yes", "--reason", f"old {spec.slot.secret} new {new_secret}")

    assert done.returncode == 0, done.stderr
    rotation = last_rotation(rig)
    store = rig.store()
    events = json.dumps([e.details for e in store.events(policy="app")], default=str)
    store.dispose()
    for secret in (spec.slot.secret, new_secret):
        assert secret not in str(rotation.rollback_reason)  # type: ignore[attr-defined]
        assert secret not in events
        assert secret not in done.stdout + done.stderr
