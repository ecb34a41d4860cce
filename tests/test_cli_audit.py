"""``rotator audit``: the trail an auditor or an on-call operator reads and filters."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.rig import Rig, migrate

RigFactory = Callable[[str], Rig]


def events(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def rotated(rig_factory: RigFactory, backend: str = "postgresql") -> Rig:
    """A rig whose policy ``app`` was rotated once, with no grace (a dozen events)."""
    rig = rig_factory("digitalocean_gradient")
    if backend == "sqlite":
        rig.database_url = f"sqlite:///{rig.tmp / 'rotator.db'}"
        migrate(rig.database_url)
    rig.add_policy("app", strategy="create_then_delete", grace="0s")
    rig.run("rotate", "now", "app")
    return rig


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_audit_limit_returns_the_newest_events_oldest_first(
    rig_factory: RigFactory, backend: str
) -> None:
    rig = rotated(rig_factory, backend)
    everything = events(rig.run("audit", "--json"))

    newest = events(rig.run("audit", "--json", "--limit", "2"))

    assert [e["id"] for e in newest] == [e["id"] for e in everything[-2:]]
    assert newest[0]["id"] < newest[1]["id"]
    assert "newest" in rig.run("audit", "--help").stdout


def test_audit_since_and_until_accept_durations(rig_factory: RigFactory) -> None:
    rig = rotated(rig_factory)

    recent = events(rig.run("audit", "--json", "--since", "1h"))
    older = events(rig.run("audit", "--json", "--until", "90m"))

    assert recent == events(rig.run("audit", "--json"))
    assert older == []


def test_audit_since_refuses_what_is_neither_a_time_nor_a_duration(
    rig_factory: RigFactory,
) -> None:
    rig = rotated(rig_factory)

    result = rig.run("audit", "--since", "yesterday")

    assert result.returncode == 2
    assert "neither a time nor a duration" in result.stderr


def test_audit_unknown_outcome_is_a_usage_error_listing_the_choices(
    rig_factory: RigFactory,
) -> None:
    rig = rotated(rig_factory)

    result = rig.run("audit", "--outcome", "faild")

    assert result.returncode == 2
    assert "'faild' is not an outcome; use one of:" in result.stderr
    assert "failed" in result.stderr
    assert "succeeded" in result.stderr


def test_audit_outcome_accepts_an_outcome_rotator_writes_before_any_was_written(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete", grace="0s")

    result = rig.run("audit", "--outcome", "recorded", "--json")

    assert events(result) == []


def test_audit_unknown_policy_warns_naming_the_known_ones_and_still_finds_its_events(
    rig_factory: RigFactory,
) -> None:
    rig = rotated(rig_factory)
    rig.add_policy("web", strategy="create_then_delete")
    del rig.policies["app"]
    rig.write_config()

    removed = rig.run("audit", "--policy", "app", "--json")
    unknown = rig.run("audit", "--policy", "nosuch")

    assert events(removed), "the events of a removed policy are still found"
    assert "warning: no policy named 'app'" in removed.stderr
    assert unknown.returncode == 0
    assert "warning: no policy named 'nosuch'" in unknown.stderr
    assert "(known: web)" in unknown.stderr


def test_the_actor_is_rotator_actor_for_every_command_that_writes(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="0s")
    rig.add_policy("kept", strategy="create_then_delete")
    as_alice = {"ROTATOR_ACTOR": "alice (CHG-42)"}
    rig.emulator.add_key(spec.slot.selector["agent_uuid"], "rotator-app-00000000")  # type: ignore[attr-defined]

    rig.run_process("adopt", "kept", env=as_alice)
    rig.run_process("rotate", "now", "app", env=as_alice)
    rig.run_process("reconcile", "--apply", "--yes", env=as_alice)
    trail = events(rig.run("audit", "--json"))
    rig.run_process("audit", "prune", "--before", "0s", "--force", env=as_alice)
    [pruned] = events(rig.run("audit", "--json", "--limit", "1"))

    assert {"adopt", "plan", "reconcile"} <= {e["step"] for e in trail}
    assert all(e["actor"].startswith("alice (CHG-42) on ") for e in trail), trail
    assert pruned["step"] == "prune"
    assert pruned["actor"].startswith("alice (CHG-42) on ")


def test_the_actor_is_the_login_name_without_rotator_actor(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete", grace="0s")

    rig.run_process("rotate", "now", "app", env={"USER": "bob", "ROTATOR_ACTOR": ""})

    assert all(e["actor"].startswith("bob on ") for e in events(rig.run("audit", "--json")))


def test_in_kubernetes_the_actor_names_the_pod_and_its_service_account(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete", grace="0s")
    pod = {
        "ROTATOR_ACTOR": "",
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "POD_NAME": "rotator-due-29401-abcde",
        "POD_SERVICE_ACCOUNT": "secrets/rotator",
    }

    rig.run_process("rotate", "now", "app", env=pod)

    actors = {e["actor"].split(" on ")[0] for e in events(rig.run("audit", "--json"))}
    assert actors == {"pod rotator-due-29401-abcde as secrets/rotator"}
