"""A real rotation, every vendor and flow: YAML -> vendor emulator -> OpenBao -> audit trail.

Runs ``rotator``'s command line (in process, tests/support/cli.py), over real
PostgreSQL and OpenBao, with the vendor emulated over real sockets.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable

import pytest
from sqlalchemy import text

from rotator.providers.registry import provider_class
from rotator.vocabulary import Result
from tests.support.rig import Rig, vendors_supporting

RigFactory = Callable[[str], Rig]


def database_dump(rig: Rig) -> str:
    store = rig.store()
    with store.engine.connect() as conn:
        rows = [
            str(tuple(row))
            for table in ("rotations", "policy_state", "audit_events")
            for row in conn.execute(text(f"SELECT * FROM {table}"))  # noqa: S608
        ]
    store.dispose()
    return "\n".join(rows)


def steps_of(rig: Rig, policy: str) -> list[tuple[str, str]]:
    store = rig.store()
    events = [(e.step, e.outcome) for e in store.events(policy=policy)]
    store.dispose()
    return events


def test_rotation_stores_a_key_the_vendor_accepts(rig: Rig) -> None:
    strategy = rig.strategy
    spec = rig.add_policy("app", strategy=strategy, grace="1h")

    result = rig.run("rotate", "now", "app")

    assert result.returncode == 0, result.stderr
    new_secret = rig.vault_secret("app")
    assert new_secret != spec.slot.secret
    assert rig.vendor_accepts("app", new_secret)
    assert rig.vault_version("app") == 2
    metadata = rig.vault_metadata("app")
    assert metadata["rotator.api_key.policy"] == "app"
    assert metadata["rotator.api_key.version"] == "2"
    assert metadata["rotator.api_key.key_id"] in rig.live_keys("app")


@pytest.mark.parametrize("vendor", vendors_supporting("create_then_delete"))
def test_create_then_delete_keeps_the_old_key_through_grace_then_revokes_it(
    rig_factory: RigFactory, vendor: str
) -> None:
    strategy = "create_then_delete"
    rig = rig_factory(vendor)
    spec = rig.add_policy("app", strategy=strategy, grace="1h")

    first = rig.run("rotate", "now", "app", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["result"] == "waiting"
    assert rig.vendor_accepts("app", spec.slot.secret), "old key must live through grace"
    assert rig.later("app", minutes=59).result is Result.WAITING

    second = rig.later("app", hours=1, seconds=1)

    assert second.result is Result.COMPLETED, second.message
    assert not rig.vendor_accepts("app", spec.slot.secret)
    assert spec.slot.key_id not in rig.live_keys("app")
    assert rig.vendor_accepts("app", rig.vault_secret("app"))
    assert len(rig.live_keys("app")) == 1


@pytest.mark.parametrize("vendor", vendors_supporting("regenerate"))
def test_regenerate_kills_the_old_secret_and_completes_at_once(
    rig_factory: RigFactory, vendor: str
) -> None:
    strategy = "regenerate"
    rig = rig_factory(vendor)
    spec = rig.add_policy("app", strategy=strategy)

    result = rig.run("rotate", "now", "app", "--json")

    assert json.loads(result.stdout)["result"] == "completed"
    assert not rig.vendor_accepts("app", spec.slot.secret)
    assert rig.live_keys("app") == [spec.slot.key_id]


def test_the_audit_trail_records_every_step(rig: Rig) -> None:
    strategy = rig.strategy
    rig.add_policy("app", strategy=strategy, grace="0s")

    rig.run("rotate", "now", "app")

    steps = steps_of(rig, "app")
    expected = [("plan", "succeeded"), ("mint", "started"), ("mint", "succeeded")]
    expected += [("store", "started"), ("store", "succeeded")]
    assert [s for s in steps if s[0] != "stage"][:5] == expected
    caller_chooses = provider_class(rig.vendor).capabilities.caller_chooses_secret
    assert (("stage", "succeeded") in steps) == caller_chooses
    assert any(step == "verify" for step, _ in steps)
    if strategy == "create_then_delete":
        assert ("grace", "started") in steps
        assert ("revoke", "started") in steps
    assert steps[-1] == ("finish", "succeeded")


def test_no_secret_reaches_the_database_or_the_output(rig: Rig) -> None:
    strategy = rig.strategy
    spec = rig.add_policy("app", strategy=strategy, grace="0s")

    # A process of its own: scrubbing must not lean on Secrets this test process holds.
    result = rig.run_process("rotate", "now", "app")
    new_secret = rig.vault_secret("app")

    dump = database_dump(rig)
    for secret in (spec.slot.secret, new_secret, rig.openbao.root_token):
        assert secret not in dump
        assert secret not in result.stdout
        assert secret not in result.stderr


def test_dry_run_lists_the_calls_and_makes_none(rig: Rig) -> None:
    strategy = rig.strategy
    rig.add_policy("app", strategy=strategy)

    result = rig.run("rotate", "now", "app", "--dry-run")

    assert result.returncode == 0, result.stderr
    assert "dry_run" in result.stdout
    assert "vault: write" in result.stdout
    assert rig.server.calls() == 0
    assert rig.vault_version("app") == 1
    assert steps_of(rig, "app") == []


def test_emergency_revokes_the_old_key_with_no_grace(rig: Rig) -> None:
    strategy = rig.strategy
    spec = rig.add_policy("app", strategy=strategy, grace="24h")

    result = rig.run("rotate", "now", "app", "--emergency", "--json")

    assert json.loads(result.stdout)["result"] == "completed"
    assert not rig.vendor_accepts("app", spec.slot.secret)
    assert rig.vendor_accepts("app", rig.vault_secret("app"))


@pytest.mark.parametrize("vendor", vendors_supporting("create_then_delete"))
def test_emergency_during_grace_revokes_both_exposed_keys(
    rig_factory: RigFactory, vendor: str
) -> None:
    strategy = "create_then_delete"
    rig = rig_factory(vendor)
    spec = rig.add_policy("app", strategy=strategy, grace="24h")
    rig.run("rotate", "now", "app")
    exposed = rig.vault_secret("app")

    rig.run("rotate", "now", "app", "--emergency")

    assert not rig.vendor_accepts("app", spec.slot.secret)
    assert not rig.vendor_accepts("app", exposed)
    assert rig.vendor_accepts("app", rig.vault_secret("app"))
    assert len(rig.live_keys("app")) == 1


@pytest.mark.parametrize("vendor", vendors_supporting("create_then_delete"))
def test_rotate_now_during_grace_does_not_start_a_second_rotation(
    rig_factory: RigFactory, vendor: str
) -> None:
    strategy = "create_then_delete"
    rig = rig_factory(vendor)
    rig.add_policy("app", strategy=strategy, grace="24h")
    rig.run("rotate", "now", "app")

    again = rig.run("rotate", "now", "app", "--json")

    assert json.loads(again.stdout)["result"] == "in_grace"
    assert len(rig.live_keys("app")) == 2
    assert rig.vault_version("app") == 2


def test_rotate_now_all_on_a_terminal_reports_every_policy(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    for name in ("one", "two", "three"):
        rig.add_policy(name, strategy="create_then_delete", grace="0s")
    command = f"{sys.executable} -m rotator rotate now --all --concurrency 3"

    result = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        capture_output=True,
        text=True,
        env=rig.env,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout
    for name in ("one", "two", "three"):
        assert re.search(rf"{name}\s+.*completed", result.stdout)
        assert rig.vendor_accepts(name, rig.vault_secret(name))
