"""``rotator reconcile`` and ``validate --online``: reports an operator can act on and script."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.support.cli import invoke
from tests.support.rig import Rig

RigFactory = Callable[[str], Rig]


def with_orphan(rig_factory: RigFactory) -> tuple[Rig, Any]:
    """A policy ``app`` whose agent holds one key named like rotator's that nothing references."""
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="0s")
    orphan = rig.emulator.add_key(spec.slot.selector["agent_uuid"], "rotator-app-0badc0de")  # type: ignore[attr-defined]
    return rig, orphan


def test_reconcile_json_is_one_object_of_findings_per_policy(rig_factory: RigFactory) -> None:
    rig, orphan = with_orphan(rig_factory)
    stray = rig.emulator.add_key(rig.policies["app"].slot.selector["agent_uuid"], "a test key")  # type: ignore[attr-defined]

    result = rig.run("reconcile", "--json")

    [entry] = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 0, result.stderr
    assert entry["policy"] == "app"
    assert entry["orphans"] == [
        {"key_id": orphan.uuid, "name": "rotator-app-0badc0de", "revocable": True}
    ]
    assert {"key_id": stray.uuid, "name": "a test key"} in entry["strays"]
    assert entry["drift"] == []


def test_reconcile_apply_json_reports_what_it_revoked(rig_factory: RigFactory) -> None:
    rig, orphan = with_orphan(rig_factory)

    result = rig.run("reconcile", "--apply", "--yes", "--json")

    [entry] = [json.loads(line) for line in result.stdout.splitlines()]
    assert entry["revoked"] == [orphan.uuid]


def test_reconcile_prompt_counts_one_key_in_the_singular(rig_factory: RigFactory) -> None:
    rig, orphan = with_orphan(rig_factory)

    result = invoke(["reconcile", "--apply"], rig.rotator_env, stdin="n\n")

    assert "revoke 1 orphan key (of app)?" in result.stderr
    assert orphan.uuid in rig.live_keys("app")


def test_reconcile_apply_says_which_policy_it_flagged(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="0s")
    rig.add_policy("fine", strategy="create_then_delete", grace="0s")
    rig.run("rotate", "now", "--all")
    rig.emulator.remove_key(spec.slot.selector, rig.vault_metadata("app")["rotator.api_key.key_id"])

    applied = rig.run("reconcile", "--apply", "--yes")

    assert "flagged app needs_attention" in applied.stdout
    assert "flagged fine" not in applied.stdout


def test_a_key_of_another_policy_sharing_the_agent_is_labelled_with_its_name(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    app = rig.add_policy("app", strategy="create_then_delete", grace="0s")
    rig.add_policy("web", strategy="create_then_delete", grace="0s")
    agent = app.slot.selector["agent_uuid"]
    rig.policies["web"].slot.selector.clear()
    rig.policies["web"].slot.selector["agent_uuid"] = agent
    rig.write_config()
    webs = rig.emulator.add_key(agent, "rotator-web-0badc0de")  # type: ignore[attr-defined]

    report = rig.run("reconcile", "app").stdout

    assert f"another policy's (web): {webs.uuid} (rotator-web-0badc0de)" in report
    assert "stray (not rotator's, never touched): " + webs.uuid not in report


def test_reconcile_and_validate_online_follow_the_file_order(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    names = ["zeta", "alpha", "mid"]
    for name in names:
        rig.add_policy(name, strategy="create_then_delete")

    reconciled = rig.run("reconcile").stdout.splitlines()
    online = rig.run("validate", "--online").stdout

    assert [line for line in reconciled if not line.startswith(" ")] == names
    positions = [online.index(f"policy {name}:") for name in names]
    assert positions == sorted(positions)
