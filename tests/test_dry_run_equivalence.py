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
from datetime import datetime, timedelta

import pytest

from rotator.audit.store import utcnow
from rotator.engine.dryrun import Line
from rotator.engine.engine import Engine
from rotator.engine.states import Result
from rotator.providers.request import PlannedCall
from tests.support.rig import Rig

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


def pattern(call: PlannedCall, base_path: str) -> re.Pattern[str]:
    """The path a described call matches: a stand-in such as ``<new key id>`` is any segment."""
    parts = re.split(r"(<[^>]+>)", call.request.path)
    path = "".join("[^/]+" if p.startswith("<") else re.escape(p) for p in parts)
    return re.compile(f"^{re.escape(base_path)}{path}$")


def matches(described: list[PlannedCall], made: list[Call], base_path: str) -> bool:
    """Whether ``made`` is ``described`` in order; pages repeat, conditional calls may be absent."""
    if not described:
        return not made
    first, rest = described[0], described[1:]
    regex = pattern(first, base_path)
    taken = 0
    if first.only_if and matches(rest, made, base_path):
        return True
    while taken < len(made) and made[taken][0] == first.request.method:
        if not regex.match(made[taken][1]):
            break
        taken += 1
        if matches(rest, made[taken:], base_path):
            return True
        if not first.every_page:
            break
    return False


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


def fresh(rig: Rig, engine: Engine, clock: Clock) -> None:
    """Nothing rotated yet."""


def in_grace(rig: Rig, engine: Engine, clock: Clock) -> None:
    """A rotation waits in grace: ``rotate now`` leaves it alone, an emergency does not."""
    engine.rotate_now("app")


def grace_over(rig: Rig, engine: Engine, clock: Clock) -> None:
    outcome = engine.rotate_now("app")
    if outcome.grace_until is not None:
        clock.skip_to(outcome.grace_until)


def interrupted_mint(rig: Rig, engine: Engine, clock: Clock) -> None:
    """The vendor failed the mint call: the rotation stays ``minting``, to be resumed."""
    operation = "create" if rig.strategy == "create_then_delete" else "regenerate"
    rig.server.fail(*rig.emulator.operations[operation], status=503)
    assert engine.rotate_now("app").state == "minting"


STARTS = {
    "fresh": (fresh, False),
    "fresh-emergency": (fresh, True),
    "in-grace": (in_grace, False),
    "in-grace-emergency": (in_grace, True),
    "grace-over": (grace_over, False),
    "interrupted-mint": (interrupted_mint, False),
}


@pytest.fixture
def clocked(rig: Rig) -> Iterator[tuple[Engine, Clock]]:
    rig.add_policy("app", strategy=rig.strategy, grace="1h")
    clock = Clock()
    engine = rig.engine(clock)
    try:
        yield engine, clock
    finally:
        engine.close()


@pytest.mark.parametrize("start", sorted(STARTS))
def test_a_dry_run_lists_the_vendor_calls_the_rotation_makes(
    rig: Rig, clocked: tuple[Engine, Clock], start: str
) -> None:
    engine, clock = clocked
    prepare, emergency = STARTS[start]
    prepare(rig, engine, clock)
    lines, _ = engine.dry_run("app", emergency=emergency)
    before = len(rig.server.log)

    drive(engine, clock, "app", emergency=emergency)

    made = rig.server.log[before:]
    described = vendor_calls(lines)
    shown = "\n".join(c.shown() for c in described)
    assert matches(described, made, rig.emulator.base_path), f"described:\n{shown}\nmade: {made}"


def test_the_plan_of_a_rotation_in_grace_lists_the_calls_its_end_makes(
    rig: Rig, clocked: tuple[Engine, Clock]
) -> None:
    if rig.strategy == "regenerate":
        pytest.skip("a regenerated key has no grace period")
    engine, clock = clocked
    in_grace(rig, engine, clock)
    lines, _ = engine.dry_run("app", trigger="schedule")
    active = engine.store.active_rotation("app")
    assert active is not None
    assert active.grace_until is not None
    clock.skip_to(active.grace_until)
    before = len(rig.server.log)

    assert engine.rotate_if_due("app").result is Result.COMPLETED

    assert matches(vendor_calls(lines), rig.server.log[before:], rig.emulator.base_path)
