"""``rotator plan``: what each policy will do and why, for people and for machines."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from tests.support.rig import Rig

RigFactory = Callable[[str], Rig]
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def plan_json(rig: Rig) -> dict[str, Any]:
    result = rig.run("plan", "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_plan_labels_drift_as_drift(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="0s")
    rig.run("rotate", "now", "app")
    rig.emulator.remove_key(spec.slot.selector, rig.vault_metadata("app")["rotator.api_key.key_id"])

    printed = rig.run("plan").stdout

    assert "  drift: Vault's current secret belongs to key" in printed
    assert "drif:" not in printed


def test_plan_after_a_failed_mint_shows_no_key_in_grace_and_the_retry_time(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete", grace="0s")
    rig.fail_every_create()
    failed = json.loads(rig.run("rotate", "now", "app", "--json").stdout)

    entry = plan_json(rig)
    printed = rig.run("plan").stdout

    assert entry["old_key_in_grace"] is None
    assert "old key in grace" not in printed
    assert ISO_Z.match(entry["due"])
    assert entry["due_now"] is False
    assert entry["why"].startswith(f"retry of rotation {failed['rotation_id']} (attempt 2 of 5)")


def test_plan_shows_durations_as_written(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="36h", every="30d")
    rig.run("adopt", "app", "--key-id", spec.slot.key_id)

    entry = plan_json(rig)

    assert entry["why"] == "30d after the adoption"
    assert "wait 36h (grace period, persisted deadline)" in entry["calls"]
    assert "4w2d" not in json.dumps(entry)


def test_plan_json_holds_machine_values(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="1h")
    rig.run("rotate", "now", "app")

    entry = plan_json(rig)

    assert ISO_Z.match(entry["due"])
    assert entry["current_key"]["key_id"] == rig.vault_metadata("app")["rotator.api_key.key_id"]
    assert isinstance(entry["current_key"]["age_seconds"], int)
    assert entry["old_key_in_grace"]["key_id"] == spec.slot.key_id
    assert "-" not in entry.values()
    assert "now" not in entry.values()


def test_plan_on_a_narrow_terminal_is_one_block_per_policy(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete")

    screen = rig.run_on_terminal("plan", columns=100).stdout

    assert "app (sandbox, create_then_delete)" in screen
    create_call = next(line for line in screen.splitlines() if "call: POST" in line)
    assert spec.slot.selector["agent_uuid"] in create_call
    assert len(screen.splitlines()) < 15
