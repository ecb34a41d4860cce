"""plan, reconcile and validate --online: what an operator sees before anyone asks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from tests.support.rig import Rig, vendor_strategies, vendors_supporting
from tests.support.vault_proxy import VaultProxy

RigFactory = Callable[[str], Rig]
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture
def vault_proxy(openbao: object) -> Iterator[VaultProxy]:
    proxy = VaultProxy(openbao.address)  # type: ignore[attr-defined]
    yield proxy
    proxy.stop()


@pytest.mark.parametrize(("vendor", "strategy"), vendor_strategies(), ids=str)
def test_plan_makes_no_write_call_anywhere(
    rig_factory: RigFactory, vault_proxy: VaultProxy, vendor: str, strategy: str
) -> None:
    rig = rig_factory(vendor)
    rig.vault_address = vault_proxy.address
    rig.add_policy("app", strategy=strategy, grace="1h")
    rig.run("rotate", "now", "app")
    vendor_writes = sum(rig.server.calls(m) for m in WRITES)
    vault_writes = len([c for c in vault_proxy.calls if c[0] in WRITES])

    result = rig.run("plan", "--json")

    assert result.returncode == 0, result.stderr
    entry = json.loads(result.stdout)
    assert entry["calls"], "plan shows the calls a rotation would make"
    assert entry["error"] is None
    assert sum(rig.server.calls(m) for m in WRITES) == vendor_writes
    assert len([c for c in vault_proxy.calls if c[0] in WRITES]) == vault_writes


def test_plan_shows_when_and_why_and_warns_about_no_overlap(rig_factory: RigFactory) -> None:
    rig = rig_factory("latitudesh")
    rig.add_policy("app", strategy="regenerate")

    entry = json.loads(rig.run("plan", "--json").stdout)

    assert entry["due_now"] is True
    assert entry["why"] == "never rotated nor adopted"
    assert any("no overlap" in w for w in entry["warnings"])
    assert any(call.startswith("PUT /auth/api_keys/") for call in entry["calls"])


@pytest.mark.parametrize("vendor", vendors_supporting("create_then_delete"))
def test_an_orphan_left_by_a_crash_is_reported_then_revoked(
    rig_factory: RigFactory, vendor: str
) -> None:
    rig = rig_factory(vendor)
    spec = rig.add_policy("app", strategy="create_then_delete", grace="0s")
    method, path = rig.emulator.operations["create"]
    hold = rig.server.hold(method, path, after=True)
    process = rig.spawn("rotate", "now", "app")
    hold.wait_arrived()
    rig.kill(process)
    hold.release()
    leftovers = [k for k in rig.live_keys("app") if k != spec.slot.key_id]

    report = rig.run("reconcile")
    applied = rig.run("reconcile", "--apply", "--yes")

    from rotator.providers.registry import provider_class

    if provider_class(vendor).capabilities.caller_chooses_secret:
        # The secret was staged in Vault first: nothing is lost, nothing is an orphan.
        assert "orphan" not in report.stdout
        assert rig.live_keys("app") == [spec.slot.key_id, *leftovers]
        return
    assert f"orphan: {leftovers[0]}" in report.stdout
    assert f"revoked orphan {leftovers[0]}" in applied.stdout
    assert rig.live_keys("app") == [spec.slot.key_id]
    restart = rig.run("rotate", "now", "app", "--json")
    assert json.loads(restart.stdout)["result"] == "completed"


def test_reconcile_refuses_too_many_revocations(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="0s")
    for n in range(3):
        rig.emulator.add_key(spec.slot.selector["agent_uuid"], f"rotator-app-0000000{n}")  # type: ignore[attr-defined]

    result = rig.run("reconcile", "--apply", "--yes", "--max-revocations", "2")

    assert result.returncode == 2
    assert "3 orphans would be revoked" in result.stderr
    assert len(rig.live_keys("app")) == 4


def test_reconcile_refuses_more_revocations_than_its_limit_without_the_cli(
    rig_factory: RigFactory,
) -> None:
    from rotator.errors import UnsafePlan
    from rotator.vocabulary import DEFAULT_MAX_REVOCATIONS

    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="0s")
    for n in range(DEFAULT_MAX_REVOCATIONS + 1):
        rig.emulator.add_key(spec.slot.selector["agent_uuid"], f"rotator-app-000000{n:02}")  # type: ignore[attr-defined]
    engine = rig.engine()
    try:
        plan = engine.plan_reconcile(["app"])
        with pytest.raises(UnsafePlan, match="11 orphans would be revoked") as refused:
            engine.reconcile(plan)
    finally:
        engine.close()
    assert refused.value.exit_code == 2
    assert len(rig.live_keys("app")) == DEFAULT_MAX_REVOCATIONS + 2


def test_a_forced_reconcile_plan_revokes_past_its_limit(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="0s")
    for n in range(2):
        rig.emulator.add_key(spec.slot.selector["agent_uuid"], f"rotator-app-0000000{n}")  # type: ignore[attr-defined]
    engine = rig.engine()
    try:
        plan = engine.plan_reconcile(["app"], max_revocations=1)
        [applied] = engine.reconcile(plan, force=True)
    finally:
        engine.close()
    assert len(applied.revoked) == 2
    assert rig.live_keys("app") == [spec.slot.key_id]


@pytest.mark.parametrize(("vendor", "strategy"), vendor_strategies(), ids=str)
def test_a_key_revoked_by_hand_is_drift_and_stops_scheduled_rotation(
    rig_factory: RigFactory, vendor: str, strategy: str
) -> None:
    rig = rig_factory(vendor)
    spec = rig.add_policy("app", strategy=strategy, grace="0s", every="1s")
    rig.run("rotate", "now", "app")
    current = rig.vault_metadata("app")["rotator.api_key.key_id"]
    rig.emulator.remove_key(spec.slot.selector, current)

    report = rig.run("reconcile")
    applied = rig.run("reconcile", "--apply", "--yes")
    due = rig.run("rotate", "due", "--json")

    assert report.returncode == 1
    assert f"DRIFT: Vault's current secret belongs to key {current}" in report.stdout
    assert applied.returncode == 1
    assert json.loads(due.stdout)["result"] == "needs_attention"


def test_a_vault_secret_changed_by_hand_is_drift(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete", grace="0s")
    rig.run("rotate", "now", "app")
    path = rig.policies["app"].vault_path
    rig.vault_api("POST", f"secret/data/{path}", {"data": {"api_key": "pasted-by-hand-123"}})

    report = rig.run("reconcile")

    assert "was not written by rotator" in report.stdout
    assert "pasted-by-hand-123" not in report.stdout


def test_strays_are_reported_and_never_touched(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="0s")
    stray = rig.emulator.add_key(spec.slot.selector["agent_uuid"], "someone's test key")  # type: ignore[attr-defined]

    report = rig.run("reconcile", "--apply", "--yes")

    assert f"stray (not rotator's, never touched): {stray.uuid}" in report.stdout
    assert stray.uuid in rig.live_keys("app")


def test_validate_online_passes_on_a_good_setup(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete")

    result = rig.run("validate", "--online")

    assert result.returncode == 0, result.stdout
    assert "FAIL" not in result.stdout
    assert "provider sandbox: token authenticates" in result.stdout


def test_validate_online_catches_a_wrong_vendor_token(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete")

    result = rig.run("validate", "--online", env={"SANDBOX_TOKEN": "wrong-token-value"})

    assert result.returncode == 2
    assert "FAIL provider sandbox: token" in result.stdout
    assert "wrong-token-value" not in result.stdout


def test_validate_online_catches_a_vault_path_without_write(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete")
    name = f"ro-{rig.vault_prefix}"
    rig.vault_api(
        "PUT",
        f"sys/policies/acl/{name}",
        {
            "policy": f'path "secret/data/{spec.vault_path}" {{ capabilities = ["read"] }}\n'
            'path "sys/capabilities-self" { capabilities = ["update"] }'
        },
    )
    token = rig.vault_api("POST", "auth/token/create", {"policies": [name]})["auth"]["client_token"]

    result = rig.run("validate", "--online", env={"TEST_VAULT_TOKEN": token})

    assert result.returncode == 2
    assert f"FAIL policy app: Vault secret/{spec.vault_path} writable" in result.stdout


def test_status_shows_the_current_key_last_outcome_and_next_due(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete", grace="1h")
    rig.run("rotate", "now", "app")

    row = json.loads(rig.run("status", "--json").stdout)

    assert row["current_key_id"] == rig.vault_metadata("app")["rotator.api_key.key_id"]
    assert row["in_flight"] == "grace"
    assert row["last_outcome"] == "grace"
    assert row["due_now"] is False
    assert row["needs_attention"] is False


def test_adopt_records_the_key_in_vault_and_waits_for_the_schedule(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete")

    adopted = rig.run("adopt", "app", "--key-id", spec.slot.key_id)
    due = rig.run("rotate", "due", "--json")
    row = json.loads(rig.run("status", "--json").stdout)

    assert adopted.returncode == 0, adopted.stderr
    assert json.loads(due.stdout)["result"] == "not_due"
    assert row["current_key_id"] == spec.slot.key_id
    assert row["key_age_seconds"] is not None
    assert rig.vault_metadata("app")["rotator.api_key.key_id"] == spec.slot.key_id
    assert rig.server.calls("POST") == 0


def test_plan_on_a_terminal_is_a_table(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete")

    result = rig.run_on_terminal("plan")

    assert result.returncode == 0, result.stdout
    assert "rotator plan" in result.stdout
    assert "POST /v2/gen-ai/agents/" in result.stdout
