"""Killed at every step boundary, rotator converges on restart and never loses a working key.

Each case runs ``rotator rotate now`` as a subprocess, holds one call open
(at the vendor emulator, or at a proxy in front of OpenBao), SIGKILLs the
process while the call is held, then runs ``rotate now`` again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from rotator.providers.registry import provider_class
from tests.support.kills import KillPoint, hold_at
from tests.support.rig import Rig, vendor_strategies
from tests.support.vault_proxy import VaultProxy

RigFactory = Callable[[str], Rig]


@dataclass(frozen=True)
class RotationKill(KillPoint):
    def leaves_orphan(self, vendor: str, strategy: str) -> bool:
        """Whether this kill leaves a created key whose secret is lost (revoked on restart).

        Never for vendors that take a secret rotator chose: it is staged in Vault first.
        """
        if provider_class(vendor).capabilities.caller_chooses_secret:
            return False
        lost_response = self.where == "vendor" and self.operation == "create" and self.after
        lost_before_vault = self.where == "vault" and self.operation == "write" and not self.after
        return strategy == "create_then_delete" and (lost_response or lost_before_vault)


def kill_points(vendor: str, strategy: str) -> list[RotationKill]:
    caps = provider_class(vendor).capabilities
    mint = "regenerate" if strategy == "regenerate" else "create"
    points = [
        RotationKill("vendor", mint, after=False),
        RotationKill("vendor", mint, after=True),
        RotationKill("vault", "write", after=False),
        RotationKill("vault", "write", after=True),
    ]
    if caps.caller_chooses_secret:
        points += [
            RotationKill("vault", "stage", after=False),
            RotationKill("vault", "stage", after=True),
        ]
    if caps.can_verify:
        points.append(RotationKill("vendor", "verify", after=True))
    if strategy == "create_then_delete":
        points.append(RotationKill("vendor", "revoke", after=True))
    return points


CASES = [
    pytest.param(vendor, strategy, point, id=f"{vendor}-{strategy}-{point.label}")
    for vendor, strategy in vendor_strategies()
    for point in kill_points(vendor, strategy)
]


@pytest.mark.parametrize(("vendor", "strategy", "point"), CASES)
def test_a_killed_rotation_converges_on_restart(
    rig_factory: RigFactory,
    vault_proxy: VaultProxy,
    vendor: str,
    strategy: str,
    point: RotationKill,
) -> None:
    rig = rig_factory(vendor)
    rig.vault_address = vault_proxy.address
    spec = rig.add_policy("app", strategy=strategy, grace="0s")
    hold = hold_at(rig, vault_proxy, point)

    process = rig.spawn("rotate", "now", "app")
    hold.wait_arrived()
    rig.kill(process)
    hold.release()

    if strategy == "create_then_delete":
        assert rig.vendor_accepts("app", rig.vault_secret("app")), "Vault lost its working key"

    restart = rig.run("rotate", "now", "app", "--json")

    assert restart.returncode == 0, restart.stderr
    assert json.loads(restart.stdout)["result"] == "completed"
    current = rig.vault_secret("app")
    assert rig.vendor_accepts("app", current)
    live = rig.live_keys("app")
    assert len(live) == 1, f"orphan or old key left behind: {live}"
    assert rig.vault_version("app") == 2, "exactly one new Vault version"
    assert rig.vault_metadata("app")["rotator.api_key.key_id"] == live[0]
    if strategy == "create_then_delete":
        assert not rig.vendor_accepts("app", spec.slot.secret)
    store = rig.store()
    orphans = [e for e in store.events(policy="app") if e.outcome == "revoked_orphan"]
    store.dispose()
    assert bool(orphans) == point.leaves_orphan(vendor, strategy)
