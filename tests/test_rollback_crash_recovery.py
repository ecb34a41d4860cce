"""A rollback killed at every step boundary is finished by the next run, for every vendor.

Each case rotates a policy into grace, runs ``rotator rollback --yes`` as a
subprocess, holds one of its calls open (at the vendor emulator, or at a proxy
in front of OpenBao), SIGKILLs the process while the call is held, then runs
rotator again: the old key is current in Vault exactly once more, the new key
is gone, and Vault held a working key throughout.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from rotator.sandbox.registry import emulator_class
from tests.support.kills import KillPoint, hold_at
from tests.support.rig import Rig, vendors_supporting
from tests.support.vault_proxy import VaultProxy

RigFactory = Callable[[str], Rig]


def rollback_kill_points(vendor: str) -> list[KillPoint]:
    points = [
        KillPoint("vault", "write", after=False),
        KillPoint("vault", "write", after=True),
        KillPoint("vault", "metadata", after=True),
        KillPoint("vendor", "revoke", after=False),
        KillPoint("vendor", "revoke", after=True),
    ]
    if "prepare_grace" in emulator_class(vendor).operations:
        # The same call lifts the grace expiry on rollback.
        points.append(KillPoint("vendor", "prepare_grace", after=True))
    return points


CASES = [
    pytest.param(vendor, point, id=f"{vendor}-{point.label}")
    for vendor in vendors_supporting("create_then_delete")
    for point in rollback_kill_points(vendor)
]


def killed_mid_rollback(rig: Rig, proxy: VaultProxy, point: KillPoint) -> tuple[str, str]:
    """Rotate into grace, then kill a rollback at ``point``; the old key's id and secret."""
    rig.vault_address = proxy.address
    spec = rig.add_policy("app", strategy="create_then_delete", grace="1h")
    rotated = rig.run("rotate", "now", "app", "--json")
    assert json.loads(rotated.stdout)["result"] == "waiting", rotated.stderr
    hold = hold_at(rig, proxy, point)

    process = rig.spawn("rollback", "app", "--yes", "--reason", "consumers broke")
    hold.wait_arrived()
    rig.kill(process)
    hold.release()

    assert rig.vendor_accepts("app", rig.vault_secret("app")), "Vault lost its working key"
    store = rig.store()
    [rotation] = store.rotations_for("app")
    store.dispose()
    assert rotation.state == "reverting", "killed before the rollback finished"
    return spec.slot.key_id, spec.slot.secret


def assert_rolled_back(rig: Rig, old_key_id: str, old_secret: str) -> None:
    assert rig.vault_secret("app") == old_secret
    assert rig.vault_version("app") == 3, "exactly one restoring Vault version"
    assert rig.vault_metadata("app")["rotator.api_key.key_id"] == old_key_id
    assert rig.live_keys("app") == [old_key_id], "the new key is left behind"
    assert rig.vendor_accepts("app", old_secret)
    store = rig.store()
    [rotation] = store.rotations_for("app")
    state = store.policy_state("app")
    store.dispose()
    assert rotation.state == "rolled_back"
    assert rotation.rollback_reason == "consumers broke"
    assert state is not None
    assert state.current_key_id == old_key_id


@pytest.mark.parametrize(("vendor", "point"), CASES)
def test_a_killed_rollback_is_finished_by_running_it_again(
    rig_factory: RigFactory, vault_proxy: VaultProxy, vendor: str, point: KillPoint
) -> None:
    rig = rig_factory(vendor)
    old_key_id, old_secret = killed_mid_rollback(rig, vault_proxy, point)

    again = rig.run("rollback", "app", "--yes", "--json")

    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["result"] == "rolled_back"
    assert_rolled_back(rig, old_key_id, old_secret)


@pytest.mark.parametrize("command", [("rotate", "due"), ("rotate", "now", "app")])
@pytest.mark.parametrize("vendor", vendors_supporting("create_then_delete"))
def test_a_killed_rollback_is_finished_by_the_next_rotate_run(
    rig_factory: RigFactory, vault_proxy: VaultProxy, vendor: str, command: tuple[str, ...]
) -> None:
    rig = rig_factory(vendor)
    point = KillPoint("vault", "write", after=True)
    old_key_id, old_secret = killed_mid_rollback(rig, vault_proxy, point)

    resumed = rig.run(*command, "--json")

    assert json.loads(resumed.stdout)["result"] == "rolled_back", resumed.stderr
    assert_rolled_back(rig, old_key_id, old_secret)


def test_plan_shows_a_rollback_under_way_and_what_finishing_it_does(
    rig_factory: RigFactory, vault_proxy: VaultProxy
) -> None:
    rig = rig_factory("scale_agentex")
    killed_mid_rollback(rig, vault_proxy, KillPoint("vault", "write", after=True))

    [entry] = [json.loads(line) for line in rig.run("plan", "--json").stdout.splitlines()]

    assert entry["in_flight"] == "reverting"
    assert "the next run resumes it" in entry["why"]
    assert any("from state reverting" in call for call in entry["calls"])
    assert any("revoke the new key" in call for call in entry["calls"])
    assert not any("wait" in call for call in entry["calls"])


@pytest.mark.parametrize("change", ["old version deleted", "secret written by hand"])
def test_a_rollback_resumed_after_vault_changed_is_abandoned_back_to_grace(
    rig_factory: RigFactory, vault_proxy: VaultProxy, change: str
) -> None:
    rig = rig_factory("digitalocean_gradient")
    killed_mid_rollback(rig, vault_proxy, KillPoint("vault", "write", after=False))
    path = rig.policies["app"].vault_path
    if change == "old version deleted":
        rig.vault_api("POST", f"secret/delete/{path}", {"versions": [1]})
    else:
        rig.vault_api("POST", f"secret/data/{path}", {"data": {"api_key": "by-hand"}})
    in_vault = rig.vault_secret("app")

    resumed = rig.run("rollback", "app", "--yes", "--json")

    assert resumed.returncode == 1
    outcome = json.loads(resumed.stdout)
    assert outcome["result"] == "needs_attention"
    assert "rollback abandoned" in outcome["message"]
    assert rig.vault_secret("app") == in_vault, "nothing was overwritten"
    assert len(rig.live_keys("app")) == 2, "both keys stay while a person looks"
    store = rig.store()
    [rotation] = store.rotations_for("app")
    store.dispose()
    assert rotation.state == "grace"
    assert rotation.needs_attention
