"""What decides which key is revoked must be rotator's own record, never someone else's write.

Vault's custom_metadata can be written by anyone with metadata access, and the
secret itself by anyone with write access. Neither may make rotator revoke a
key it did not make, nor be overwritten by rotator.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from rotator.sandbox.server import Slot
from tests.support.rig import Rig, vendors_supporting
from tests.support.vault_proxy import VaultProxy

RigFactory = Callable[[str], Rig]


def without_key_id(rig: Rig, name: str) -> None:
    """Drop the key id from the policy's selector: rotator must find the old key itself."""
    spec = rig.policies[name]
    slot = spec.slot
    selector = {k: v for k, v in slot.selector.items() if v != slot.key_id}
    spec.slot = Slot(selector, slot.key_id, slot.secret)
    rig.write_config()


@pytest.mark.parametrize("vendor", vendors_supporting("create_then_delete"))
def test_foreign_vault_metadata_does_not_choose_the_key_to_revoke(
    rig_factory: RigFactory, vendor: str
) -> None:
    rig = rig_factory(vendor)
    spec = rig.add_policy("app", strategy="create_then_delete", grace="0s")
    without_key_id(rig, "app")
    rig.vault_api(
        "POST",
        f"secret/metadata/{spec.vault_path}",
        {"custom_metadata": {"rotator.api_key.key_id": spec.slot.key_id}},
    )

    refused = rig.run("rotate", "now", "app", "--json")

    outcome = json.loads(refused.stdout)
    assert outcome["result"] == "failed", refused.stderr
    assert "rotator adopt app --key-id" in outcome["message"]
    assert rig.server.calls("POST") + rig.server.calls("PUT") + rig.server.calls("DELETE") == 0
    assert rig.live_keys("app") == [spec.slot.key_id]

    adopted = rig.run("adopt", "app", "--key-id", spec.slot.key_id)
    rotated = rig.run("rotate", "now", "app", "--json")

    assert adopted.returncode == 0, adopted.stderr
    assert json.loads(rotated.stdout)["result"] == "completed", rotated.stderr
    assert spec.slot.key_id not in rig.live_keys("app")


@pytest.mark.parametrize("vendor", vendors_supporting("create_then_delete"))
def test_a_vault_write_by_someone_else_during_a_rotation_is_never_overwritten(
    rig_factory: RigFactory, vault_proxy: VaultProxy, vendor: str
) -> None:
    rig = rig_factory(vendor)
    rig.vault_address = vault_proxy.address
    spec = rig.add_policy("app", strategy="create_then_delete", grace="0s")
    # The first read of the secret's data is the check-and-set write's own base read.
    hold = vault_proxy.hold("GET", f"^/v1/secret/data/{spec.vault_path}$", after=True, resume=True)
    process = rig.spawn("rotate", "now", "app", "--json")
    hold.wait_arrived()
    rig.vault_api("POST", f"secret/data/{spec.vault_path}", {"data": {"api_key": "by-hand"}})
    hold.release()
    stdout, stderr = process.communicate(timeout=60)

    outcome = json.loads(stdout)
    assert outcome["result"] == "needs_attention", stderr
    assert "written by someone else" in outcome["message"]
    assert rig.vault_secret("app") == "by-hand"
    assert rig.vault_version("app") == 2
    assert rig.vendor_accepts("app", spec.slot.secret), "the old key is never touched"
