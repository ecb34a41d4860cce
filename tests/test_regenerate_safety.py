"""Never lose the only secret: Vault is asked before the vendor, and holds what regenerate made.

A regenerate kills the old secret at the vendor the moment it returns the new
one, so the new secret must reach Vault. Rotator asks Vault first whether it
could store it (a read-only token stops the rotation with nothing done at the
vendor), then retries the Vault write while it holds the secret in memory, and
says what to do when it cannot.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.support.rig import Rig, vendors_supporting
from tests.support.vault_proxy import VaultProxy
from tests.support.webhook import WebhookReceiver

RigFactory = Callable[[str], Rig]


def read_only_token(rig: Rig) -> str:
    """A real OpenBao token whose policy may read, but not write, the rig's secrets."""
    name = f"read-only-{rig.vault_prefix}"
    rules = "\n".join(
        f'path "secret/{kind}/{rig.vault_prefix}/*" {{ capabilities = ["read"] }}'
        for kind in ("data", "metadata")
    )
    rig.vault_api("PUT", f"sys/policies/acl/{name}", {"policy": rules})
    created = rig.vault_api("POST", "auth/token/create", {"policies": [name]})
    return str(created["auth"]["client_token"])


def mint_call(rig: Rig, strategy: str) -> tuple[str, str]:
    return rig.emulator.operations["regenerate" if strategy == "regenerate" else "create"]


def regenerating_rig(rig_factory: RigFactory, proxy: VaultProxy, vendor: str, window: str) -> Rig:
    """A regenerate policy whose Vault traffic goes through ``proxy``; its writes fail."""
    rig = rig_factory(vendor)
    rig.vault_address = proxy.address
    rig.vault_settings = {"write_retry_for": window}
    rig.add_policy("app", strategy="regenerate", grace="0s")
    return rig


def test_a_token_that_may_not_write_the_secret_stops_rotation_before_the_vendor(
    rig: Rig,
) -> None:
    spec = rig.add_policy("app", strategy=rig.strategy)
    token = read_only_token(rig)

    result = rig.run("rotate", "now", "app", "--json", env={"TEST_VAULT_TOKEN": token})

    assert result.returncode == 1
    outcome = json.loads(result.stdout)
    assert outcome["result"] == "failed"
    assert f"may not write secret/{spec.vault_path}" in outcome["message"]
    assert "rotator-policy.hcl" in outcome["message"]
    assert rig.server.calls(*mint_call(rig, rig.strategy)) == 0
    assert rig.vault_secret("app") == spec.slot.secret
    assert rig.vendor_accepts("app", spec.slot.secret)


@pytest.mark.parametrize("vendor", vendors_supporting("regenerate"))
def test_a_regenerated_secret_is_held_until_vault_takes_it(
    rig_factory: RigFactory, vault_proxy: VaultProxy, vendor: str
) -> None:
    rig = regenerating_rig(rig_factory, vault_proxy, vendor, "60s")
    vault_proxy.fail("POST", f"^/v1/secret/data/{rig.policies['app'].vault_path}$", times=2)

    result = rig.run("rotate", "now", "app", "--json")

    assert json.loads(result.stdout)["result"] == "completed", result.stderr
    assert rig.server.calls(*mint_call(rig, "regenerate")) == 1
    assert rig.vendor_accepts("app", rig.vault_secret("app"))


@pytest.mark.parametrize("vendor", vendors_supporting("regenerate"))
def test_a_regenerated_secret_vault_never_took_flags_the_policy_with_what_to_do(
    rig_factory: RigFactory, vault_proxy: VaultProxy, vendor: str
) -> None:
    rig = regenerating_rig(rig_factory, vault_proxy, vendor, "0s")  # one try
    vault_proxy.fail("POST", f"^/v1/secret/data/{rig.policies['app'].vault_path}$", times=10**6)
    receiver = WebhookReceiver()
    rig.extra_config = f"""
    notifications:
      webhooks:
        ops: {{url: "{receiver.url}", format: json, events: [needs_attention]}}
    """
    rig.write_config()

    lost = rig.run("rotate", "now", "app", "--json")
    due = rig.run("rotate", "due", "--json")
    receiver.stop()

    outcome = json.loads(lost.stdout)
    assert outcome["result"] == "needs_attention", lost.stderr
    assert "consumers are down" in outcome["message"]
    assert "'rotator rotate now app'" in outcome["message"]
    assert json.loads(due.stdout)["result"] == "needs_attention"
    assert "consumers are down" in receiver.received[0]["message"], "the webhooks hear of it"
    assert rig.server.calls(*mint_call(rig, "regenerate")) == 1, "no regenerate on schedule"

    vault_proxy.faults.clear()
    again = rig.run("rotate", "now", "app", "--json")

    assert json.loads(again.stdout)["result"] == "completed", again.stderr
    assert rig.vendor_accepts("app", rig.vault_secret("app"))
