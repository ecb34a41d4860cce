"""What happens when the vendor, Vault or the user gets it wrong: nothing working is lost."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from rotator.vocabulary import Result
from tests.support.rig import Rig, vendors_that_verify

RigFactory = Callable[[str], Rig]


def mint_operation(strategy: str) -> str:
    return "regenerate" if strategy == "regenerate" else "create"


def rotation_rows(rig: Rig, policy: str) -> list[object]:
    store = rig.store()
    rows = store.rotations_for(policy)
    store.dispose()
    return list(rows)


@pytest.mark.parametrize("vendor", vendors_that_verify("create_then_delete"))
def test_failed_verification_restores_vault_and_revokes_the_new_key(
    rig_factory: RigFactory, vendor: str
) -> None:
    rig = rig_factory(vendor)
    spec = rig.add_policy("app", strategy="create_then_delete")
    method, path = rig.emulator.operations["create"]
    hold = rig.server.hold(method, path, after=True, resume=True)
    process = rig.spawn("rotate", "now", "app", "--json")
    hold.wait_arrived()
    [new_key] = [k for k in rig.live_keys("app") if k != spec.slot.key_id]
    rig.emulator.remove_key(spec.slot.selector, new_key)  # the vendor loses it at once
    hold.release()
    stdout, _ = process.communicate(timeout=60)

    assert process.returncode == 1
    assert json.loads(stdout)["result"] == "rolled_back"
    assert rig.vault_secret("app") == spec.slot.secret
    assert rig.vault_version("app") == 3
    assert rig.live_keys("app") == [spec.slot.key_id]


def test_a_vendor_outage_at_mint_leaves_the_old_key_and_a_retry_completes(rig: Rig) -> None:
    strategy = rig.strategy
    spec = rig.add_policy("app", strategy=strategy, grace="0s")
    method, path = rig.emulator.operations[mint_operation(strategy)]
    rig.server.fail(method, path, status=500, times=1)

    failed = rig.run("rotate", "now", "app", "--json")

    assert failed.returncode == 1
    assert json.loads(failed.stdout)["result"] == "failed"
    assert rig.vault_secret("app") == spec.slot.secret
    assert rig.vendor_accepts("app", spec.slot.secret)

    retried = rig.run("rotate", "now", "app", "--json")

    assert json.loads(retried.stdout)["result"] == "completed"
    assert rig.vendor_accepts("app", rig.vault_secret("app"))
    assert len(rotation_rows(rig, "app")) == 1


def test_rate_limits_are_waited_out_using_retry_after(rig: Rig) -> None:
    strategy = rig.strategy
    rig.add_policy("app", strategy=strategy, grace="0s")
    method, path = rig.emulator.operations[mint_operation(strategy)]
    rig.server.fail(method, path, status=429, times=2, retry_after=0.2)

    result = rig.run("rotate", "now", "app", "--json")

    assert json.loads(result.stdout)["result"] == "completed"
    assert rig.server.calls(method, path) == 3


def test_repeated_failures_end_in_needs_attention_with_the_old_key_kept(rig: Rig) -> None:
    strategy = rig.strategy
    spec = rig.add_policy("app", strategy=strategy, grace="0s")
    method, path = rig.emulator.operations[mint_operation(strategy)]
    rig.server.fail(method, path, status=503, times=100)
    engine = rig.engine()
    engine.max_attempts = 2

    outcomes = [engine.rotate_now("app").result for _ in range(2)]
    due = engine.rotate_if_due("app")
    engine.close()

    assert outcomes == [Result.FAILED, Result.NEEDS_ATTENTION]
    assert due.result is Result.NEEDS_ATTENTION
    assert "rotate now app" in due.message
    assert rig.vault_secret("app") == spec.slot.secret
    assert rig.vendor_accepts("app", spec.slot.secret)


def test_a_wrong_vendor_token_fails_with_what_to_check(rig: Rig) -> None:
    strategy = rig.strategy
    spec = rig.add_policy("app", strategy=strategy)
    rig.emulator.tokens.clear()

    result = rig.run("rotate", "now", "app")

    assert result.returncode == 1
    assert "check the provider's token" in result.stdout
    assert rig.vault_secret("app") == spec.slot.secret


def test_rotate_due_leaves_a_recently_rotated_policy_alone(rig: Rig) -> None:
    strategy = rig.strategy
    rig.add_policy("app", strategy=strategy, grace="0s")
    rig.run("rotate", "now", "app")
    calls_before = rig.server.calls()

    result = rig.run("rotate", "due", "--json")

    assert result.returncode == 0
    assert json.loads(result.stdout)["result"] == "not_due"
    assert rig.server.calls() == calls_before


def test_a_database_without_the_schema_is_refused_before_any_call(
    rig_factory: RigFactory, tmp_path: object, vendor_strategy: tuple[str, str]
) -> None:
    vendor, strategy = vendor_strategy
    rig = rig_factory(vendor)
    rig.database_url = f"sqlite:///{tmp_path}/empty.db"
    rig.add_policy("app", strategy=strategy)

    result = rig.run("rotate", "now", "app")

    assert result.returncode == 1
    assert "run 'rotator db upgrade'" in result.stderr
    assert rig.server.calls() == 0


def test_an_unknown_policy_name_exits_2(rig: Rig) -> None:
    strategy = rig.strategy
    rig.add_policy("app", strategy=strategy)

    result = rig.run("rotate", "now", "nope")

    assert result.returncode == 2
    assert "no policy named 'nope'" in result.stderr


def test_a_vendor_call_that_times_out_is_retried_when_safe(rig: Rig) -> None:
    strategy = rig.strategy
    rig.provider_timeout = 1.0
    rig.add_policy("app", strategy=strategy, grace="0s")
    method, path = rig.emulator.operations["revoke" if strategy != "regenerate" else "verify"]
    rig.server.fail(method, path, timeout=True, times=1)

    result = rig.run("rotate", "now", "app", "--json")

    assert json.loads(result.stdout)["result"] == "completed"
    assert rig.server.calls(method, path) >= 2
