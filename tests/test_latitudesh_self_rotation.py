"""Latitude.sh: rotating the very token rotator uses, and telling a dead key from a busy vendor.

A policy whose Vault path and field are its provider's ``vault:`` token rotates
rotator's own credential. Rotator must follow that token through a roll-back
and through another replica's rotation, and must only take a definite auth
rejection as proof that a new key does not work.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.support.rig import MANAGEMENT_TOKEN, Rig

RigFactory = Callable[[str], Rig]
VERIFY = ("GET", r"^/auth/api_keys$")
CREATE = ("POST", r"^/auth/api_keys$")


def own_token_rig(rig_factory: RigFactory) -> Rig:
    """Policy ``own`` rotates the Latitude.sh key rotator authenticates with, kept in Vault."""
    rig = rig_factory("latitudesh")
    rig.emulator.tokens.clear()
    own = rig.emulator.add_key("rotator", token=MANAGEMENT_TOKEN)  # type: ignore[attr-defined]
    spec = rig.add_policy("own", strategy="create_then_delete", grace="0s")
    spec.slot.selector["api_key_id"] = own.id
    rig.vault_api("POST", f"secret/data/{spec.vault_path}", {"data": {"api_key": MANAGEMENT_TOKEN}})
    reference = f'token: "vault:{spec.vault_path}#api_key"'
    rig.config_path.write_text(
        rig.write_config().read_text().replace('token: "${SANDBOX_TOKEN}"', reference)
    )
    return rig


def test_a_vendor_5xx_at_verification_fails_the_attempt_instead_of_rolling_back(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("latitudesh")
    rig.provider_settings = {"retry_for": "0s"}  # the outage fails the verify at once
    spec = rig.add_policy("app", strategy="create_then_delete", grace="0s")
    hold = rig.server.hold(*CREATE, after=True, resume=True)
    process = rig.spawn("rotate", "now", "app", "--json")
    hold.wait_arrived()
    rig.server.fail(*VERIFY, status=503, times=10**6)
    hold.release()
    stdout, stderr = process.communicate(timeout=120)

    assert json.loads(stdout)["result"] == "failed", stderr
    assert rig.vault_secret("app") != spec.slot.secret, "the new key stays in Vault"
    assert rig.vendor_accepts("app", rig.vault_secret("app"))
    assert rig.vendor_accepts("app", spec.slot.secret)

    rig.server.clear()
    again = rig.run("rotate", "now", "app", "--json")

    assert json.loads(again.stdout)["result"] == "completed", again.stderr
    assert spec.slot.key_id not in rig.live_keys("app")


def test_after_a_roll_back_rotator_authenticates_with_its_old_token_again(
    rig_factory: RigFactory,
) -> None:
    rig = own_token_rig(rig_factory)
    selector = rig.policies["own"].slot.selector
    before = set(rig.live_keys("own"))
    hold = rig.server.hold(*CREATE, after=True, resume=True)
    process = rig.spawn("rotate", "now", "own", "--json")
    hold.wait_arrived()
    [new_key] = set(rig.live_keys("own")) - before
    rig.emulator.remove_key(selector, new_key)  # the new key dies before it is verified
    hold.release()
    stdout, stderr = process.communicate(timeout=60)

    assert json.loads(stdout)["result"] == "rolled_back", stderr
    assert rig.vault_secret("own") == MANAGEMENT_TOKEN
    assert rig.emulator.accepts(selector, MANAGEMENT_TOKEN)
    assert set(rig.live_keys("own")) == before


def test_a_401_after_another_replica_rotated_the_token_reads_it_again_from_vault(
    rig_factory: RigFactory,
) -> None:
    rig = own_token_rig(rig_factory)
    replica = rig.engine()
    replica.provider_for(replica.policy("own"))  # holds the token as it was

    other = rig.run("rotate", "now", "own", "--json")
    assert json.loads(other.stdout)["result"] == "completed", other.stderr
    assert not rig.emulator.accepts(rig.policies["own"].slot.selector, MANAGEMENT_TOKEN)

    outcome = replica.rotate_now("own")
    replica.close()

    assert outcome.result.value == "completed", outcome.message
    assert rig.emulator.accepts(rig.policies["own"].slot.selector, rig.vault_secret("own"))
