"""A dry run lists exactly the vendor calls the rotation then makes, in order.

For every registered vendor, every strategy its provider offers and every
state a rotation may start from, the engine's dry run is taken first, then the
rotation is driven to its end against the emulator (a test clock skips the
grace period), and the calls the emulator received are matched against the
calls described: method and path, in order. A listing described as "every
page" matches one or more calls; a call described with a condition (a key an
interrupted mint may have left) matches at most one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from rotator.audit.store import utcnow
from rotator.engine.dryrun import Line
from rotator.engine.engine import Engine
from rotator.providers.registry import provider_class
from rotator.providers.request import PlannedCall
from rotator.testing import sent_as_planned
from rotator.vocabulary import Result
from tests.support.rig import Rig
from tests.support.vault_proxy import VaultProxy

RigFactory = Callable[[str], Rig]
Call = tuple[str, str]


class Clock:
    """The engine's clock, moved past a grace period instead of waiting it out."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def skip_to(self, when: datetime) -> None:
        self.now = max(self.now, when) + timedelta(seconds=1)


def vendor_calls(lines: list[Line]) -> list[PlannedCall]:
    return [line for line in lines if isinstance(line, PlannedCall)]


def drive(engine: Engine, clock: Clock, name: str, *, emergency: bool) -> None:
    """``rotate now``, then again after each grace period, until the rotation is done."""
    outcome = engine.rotate_now(name, emergency=emergency)
    for _ in range(3):
        if outcome.result is not Result.WAITING:
            break
        assert outcome.grace_until is not None
        clock.skip_to(outcome.grace_until)
        outcome = engine.rotate_now(name)
    assert outcome.result in (Result.COMPLETED, Result.IN_GRACE), outcome.message


def fresh(scene: Scene) -> None:
    """Nothing rotated yet."""


def in_grace(scene: Scene) -> None:
    """A rotation waits in grace: ``rotate now`` leaves it alone, an emergency does not."""
    scene.engine.rotate_now("app")


def grace_over(scene: Scene) -> None:
    outcome = scene.engine.rotate_now("app")
    if outcome.grace_until is not None:
        scene.clock.skip_to(outcome.grace_until)


def interrupted_mint(scene: Scene) -> None:
    """The vendor failed the mint call: the rotation stays ``minting``, to be resumed."""
    rig = scene.rig
    operation = "create" if rig.strategy == "create_then_delete" else "regenerate"
    rig.server.fail(*rig.emulator.operations[operation], status=503)
    assert scene.engine.rotate_now("app").state == "minting"


def interrupted_store(scene: Scene) -> None:
    """Vault failed the write of the new secret: the rotation stays ``minted``."""
    path = rf"/v1/secret/data/{re.escape(scene.rig.policies['app'].vault_path)}$"
    scene.vault_proxy.fail("POST", path, status=503)
    assert scene.engine.rotate_now("app").state == "minted"


@dataclass(frozen=True)
class Scene:
    """What a starting state is prepared with."""

    rig: Rig
    engine: Engine
    clock: Clock
    vault_proxy: VaultProxy


@dataclass(frozen=True)
class Start:
    prepare: Callable[[Scene], None]
    emergency: bool = False
    #: The policy waits for its old key to go unused before revoking (``revoke_when_unused``).
    usage_aware: bool = False
    #: Why the start does not apply to a rig, if it does not.
    skip: Callable[[Rig], str] = lambda rig: ""


def no_usage_data(rig: Rig) -> str:
    reports = provider_class(rig.vendor).capabilities.reports_usage
    return "" if reports else f"{rig.vendor} reports no key usage"


def held_in_memory(rig: Rig) -> str:
    return (
        "a regenerated secret is held in memory and its Vault write retried instead"
        if rig.strategy == "regenerate"
        else ""
    )


STARTS = {
    "fresh": Start(fresh),
    "fresh-emergency": Start(fresh, emergency=True),
    "in-grace": Start(in_grace),
    "in-grace-emergency": Start(in_grace, emergency=True),
    "grace-over": Start(grace_over),
    "grace-over-usage-aware": Start(grace_over, usage_aware=True, skip=no_usage_data),
    "interrupted-mint": Start(interrupted_mint),
    "interrupted-mint-emergency": Start(interrupted_mint, emergency=True),
    "interrupted-store": Start(interrupted_store, skip=held_in_memory),
}


@contextmanager
def clocked_engine(rig: Rig, start: Start) -> Iterator[tuple[Engine, Clock]]:
    """The policy ``app`` (grace 1h) and an engine on a test clock."""
    spec = rig.add_policy("app", strategy=rig.strategy, grace="1h")
    if start.usage_aware:
        spec.revoke_when_unused = "{quiet: 10m, max_extension: 1h}"
        rig.write_config()
    clock = Clock()
    engine = rig.engine(clock)
    try:
        yield engine, clock
    finally:
        engine.close()


@pytest.mark.parametrize("name", sorted(STARTS))
def test_a_dry_run_lists_the_vendor_calls_the_rotation_makes(
    rig: Rig, vault_proxy: VaultProxy, name: str
) -> None:
    start = STARTS[name]
    if reason := start.skip(rig):
        pytest.skip(reason)
    rig.vault_address = vault_proxy.address
    with clocked_engine(rig, start) as (engine, clock):
        start.prepare(Scene(rig, engine, clock, vault_proxy))
        lines, _ = engine.dry_run("app", emergency=start.emergency)
        before = len(rig.server.log)

        drive(engine, clock, "app", emergency=start.emergency)

    made = rig.server.log[before:]
    described = vendor_calls(lines)
    shown = "\n".join(c.shown() for c in described)
    assert sent_as_planned(described, made, rig.emulator.base_path), (
        f"described:\n{shown}\nmade: {made}"
    )


def test_the_plan_of_a_rotation_in_grace_lists_the_calls_its_end_makes(rig: Rig) -> None:
    if rig.strategy == "regenerate":
        pytest.skip("a regenerated key has no grace period")
    with clocked_engine(rig, STARTS["in-grace"]) as (engine, clock):
        engine.rotate_now("app")
        lines, _ = engine.dry_run("app", trigger="schedule")
        active = engine.store.active_rotation("app")
        assert active is not None
        assert active.grace_until is not None
        clock.skip_to(active.grace_until)
        before = len(rig.server.log)

        assert engine.rotate_if_due("app").result is Result.COMPLETED

    assert sent_as_planned(vendor_calls(lines), rig.server.log[before:], rig.emulator.base_path)
