"""reconcile never revokes another policy's key: names that could be confused are refused,
and whatever any policy holds is never an orphan of another."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from rotator.config.loader import parse_config
from rotator.errors import ConfigError
from rotator.providers.registry import provider_class
from rotator.sandbox.server import Slot
from tests.support.configs import config_text
from tests.support.rig import Rig

RigFactory = Callable[[str], Rig]
LONG = "payments-gateway-production-eu-west-inference-agent-key"


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_VAULT_TOKEN", "vault-token-value")
    monkeypatch.setenv("TEST_DO_TOKEN", "do-token-value-123")


def two_policies(first: str, second: str, *, agents: tuple[str, str] = ("a-1", "a-1")) -> str:
    """Two policies on DigitalOcean agents; ``first``/``second`` are their extra key: fields."""
    return config_text(
        f"""
        policies:
          one:
            provider: do
            key: {{agent_uuid: {agents[0]}{first}}}
            schedule: {{every: 30d}}
            vault: {{path: apps/one}}
          two:
            provider: do
            key: {{agent_uuid: {agents[1]}{second}}}
            schedule: {{every: 30d}}
            vault: {{path: apps/two}}
        """
    )


def refused(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "rotator.yaml", provider_class)
    assert caught.value.exit_code == 2
    return str(caught.value)


def test_two_policies_on_one_slot_with_the_same_name_prefix_are_refused() -> None:
    message = refused(two_policies(", name_prefix: svc", ", name_prefix: svc"))
    assert "policies.two.key" in message
    assert "policy one's svc-..." in message


def test_a_name_prefix_beginning_another_on_one_slot_is_refused() -> None:
    message = refused(two_policies(", name_prefix: svc", ", name_prefix: svc-batch"))
    assert "name_prefix that does not begin the other's" in message


def test_policy_names_colliding_at_the_vendor_name_limit_are_refused() -> None:
    text = two_policies("", "").replace("  one:", f"  {LONG}-a:").replace("  two:", f"  {LONG}-b:")
    message = refused(text)
    assert "cut to the vendor's 64-character name limit" in message


def test_the_same_name_prefix_on_different_slots_is_accepted() -> None:
    text = two_policies(", name_prefix: svc", ", name_prefix: svc", agents=("a-1", "a-2"))
    assert set(parse_config(text, "rotator.yaml", provider_class).policies) == {"one", "two"}


def test_reconcile_never_revokes_another_policys_current_key(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    alpha = rig.add_policy("alpha", strategy="create_then_delete", grace="0s")
    beta = rig.add_policy("beta", strategy="create_then_delete", grace="0s")
    agent = alpha.slot.selector["agent_uuid"]
    key = rig.emulator.add_key(agent, "beta's key")  # type: ignore[attr-defined]
    beta.slot = Slot({"agent_uuid": agent, "api_key_uuid": key.uuid}, key.uuid, key.secret)
    rig.vault_api("POST", f"secret/data/{beta.vault_path}", {"data": {"api_key": key.secret}})
    alpha.slot.selector["name_prefix"] = "alpha"
    beta.slot.selector["name_prefix"] = "svc"
    rig.write_config()
    rotated = rig.run("rotate", "now", "beta", "--json")
    assert json.loads(rotated.stdout)["result"] == "completed", rotated.stderr
    # An operator renames the prefixes: beta's current key now looks like one of alpha's.
    alpha.slot.selector["name_prefix"] = "svc"
    beta.slot.selector["name_prefix"] = "beta"
    rig.write_config()

    applied = rig.run("reconcile", "--apply", "--yes")

    assert applied.returncode in (0, 1), applied.stderr
    assert rig.vendor_accepts("beta", rig.vault_secret("beta")), "beta's key must survive"
    assert "revoked orphan" not in applied.stdout
