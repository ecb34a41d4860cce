"""``plan`` and ``rotate now --dry-run`` show the calls the run makes: no more, no fewer.

Each test names a way the description and the run once drifted apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rotator.audit.pauses import pause_policy
from rotator.engine.engine import Engine
from rotator.vocabulary import Result
from tests.support.rig import MANAGEMENT_TOKEN, Rig
from tests.support.vault_proxy import VaultProxy

RigFactory = Callable[[str], Rig]


@contextmanager
def engine_of(rig: Rig) -> Iterator[Engine]:
    engine = rig.engine()
    try:
        yield engine
    finally:
        engine.close()


def test_the_plan_of_an_h2o_rotation_shows_the_old_keys_expiry(rig_factory: RigFactory) -> None:
    rig = rig_factory("h2ogpte")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="1h")

    with engine_of(rig) as engine:
        calls = engine.describe("app").calls

    assert any(c.startswith(f"PATCH /admin/api_keys/expire/{spec.slot.key_id}") for c in calls)


def test_a_dry_run_during_grace_lists_no_verify(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete", grace="1h")

    with engine_of(rig) as engine:
        assert engine.rotate_now("app").result is Result.WAITING
        calls = engine.describe("app").calls

    assert not [c for c in calls if c.startswith("GET")], calls


def test_an_emergency_dry_run_during_grace_lists_the_revoke_then_a_fresh_rotation(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="1h")

    with engine_of(rig) as engine:
        assert engine.rotate_now("app").result is Result.WAITING
        calls = list(engine.describe("app", emergency=True).calls)

    revoke = next(
        i for i, c in enumerate(calls) if c.startswith("DELETE") and spec.slot.key_id in c
    )
    assert any(c.startswith("POST") for c in calls[revoke:]), calls


def test_a_dry_run_reads_no_vault_even_for_a_vault_provider_token(
    rig_factory: RigFactory, vault_proxy: VaultProxy
) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.vault_address = vault_proxy.address
    spec = rig.add_policy("app", strategy="create_then_delete")
    reference = f'token: "vault:{spec.vault_path}#api_key"'
    rig.config_path.write_text(
        rig.write_config().read_text().replace('token: "${SANDBOX_TOKEN}"', reference)
    )

    with engine_of(rig) as engine:
        outcome = engine.describe("app")

    assert outcome.result is Result.DRY_RUN
    assert vault_proxy.calls == []


def test_a_dry_run_of_a_paused_policy_lists_no_call_unless_forced(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete")

    with engine_of(rig) as engine:
        pause_policy(engine.store, "app", reason="freeze", by="test", until=None)
        refused = engine.rotate_now("app")
        described = engine.describe("app")
        forced = engine.describe("app", force=True)

    assert refused.result is Result.PAUSED
    assert described.calls == ()
    assert "freeze" in described.message
    assert "--force" in described.message
    assert any(c.startswith("POST") for c in forced.calls)


def test_the_plan_of_a_rotation_needing_attention_lists_no_call(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.one_attempt_left("app")

    with engine_of(rig) as engine:
        assert engine.rotate_if_due("app").result is Result.NEEDS_ATTENTION
        attention = engine.rotate_if_due("app")
        planned = engine.describe("app", trigger="schedule")

    assert attention.result is Result.NEEDS_ATTENTION
    assert planned.calls == ()
    assert planned.message == f"no call would be made: {attention.message}"


def test_rotate_now_dry_run_prints_the_described_calls_with_secrets_masked(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("scale_agentex")
    spec = rig.add_policy("app", strategy="create_then_delete")
    with engine_of(rig) as engine:
        described = engine.describe("app").calls

    result = rig.run("rotate", "now", "app", "--dry-run")

    assert result.returncode == 0, result.stderr
    first, *calls = result.stdout.splitlines()
    assert first.split()[:3] == ["app", "dry_run", "no"]
    assert [line.strip().removeprefix("- ") for line in calls] == list(described)
    assert any('"api_key": "<secret>"' in line for line in calls)
    for secret in (spec.slot.secret, MANAGEMENT_TOKEN, rig.openbao.root_token):
        assert secret not in result.stdout
    assert rig.server.calls() == 0
