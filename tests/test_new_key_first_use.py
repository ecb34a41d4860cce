"""The new key's first use, shown by ``plan`` and ``status`` while its rotation is in grace.

Where the vendor reports key usage (H2O GPTe, Latitude.sh), an operator sees
consumers moving to the new key: rotator keeps the earliest use the vendor
reported for it. CLI-level over PostgreSQL, OpenBao and the emulators; a
consumer's use of a key is set through the emulator's control.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from rotator.timestamps import format_time
from tests.support.rig import Rig

RigFactory = Callable[[str], Rig]
USAGE_VENDORS = ["h2ogpte", "latitudesh"]


@pytest.fixture(params=USAGE_VENDORS)
def usage_rig(request: pytest.FixtureRequest, rig_factory: RigFactory) -> Rig:
    return rig_factory(request.param)


def in_grace(rig: Rig) -> str:
    """Rotate ``app`` into a long grace; the new key's id."""
    rig.add_policy("app", strategy="create_then_delete", grace="1h")
    done = json.loads(rig.run("rotate", "now", "app", "--json").stdout)
    assert done["result"] == "waiting"
    return str(done["new_key_id"])


def a_moment_ago(seconds: int) -> datetime:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).replace(microsecond=0)


def status_row(rig: Rig) -> dict[str, object]:
    [row] = [json.loads(line) for line in rig.run("status", "--json").stdout.splitlines()]
    return dict(row)


def plan_entry(rig: Rig) -> dict[str, object]:
    [entry] = [json.loads(line) for line in rig.run("plan", "--json").stdout.splitlines()]
    return dict(entry)


def test_plan_shows_when_the_new_key_was_first_used(usage_rig: Rig) -> None:
    new_key = in_grace(usage_rig)
    used = a_moment_ago(5)
    usage_rig.emulator.mark_used(new_key, used)

    entry = plan_entry(usage_rig)
    shown = usage_rig.run("plan").stdout

    assert entry["new_key_first_used_at"] == format_time(used)
    assert f"new key first used at {format_time(used)}" in shown


def test_status_shows_when_the_new_key_was_first_used(usage_rig: Rig) -> None:
    new_key = in_grace(usage_rig)
    used = a_moment_ago(5)
    usage_rig.emulator.mark_used(new_key, used)
    usage_rig.run("rotate", "due")

    row = status_row(usage_rig)
    shown = usage_rig.run("status").stdout

    assert row["new_key_first_used_at"] == format_time(used)
    assert f"new key first used at {format_time(used)}" in shown


def test_the_first_use_is_kept_when_the_new_key_is_used_again(usage_rig: Rig) -> None:
    new_key = in_grace(usage_rig)
    first = a_moment_ago(10)
    usage_rig.emulator.mark_used(new_key, first)
    usage_rig.run("rotate", "due")
    usage_rig.emulator.mark_used(new_key, a_moment_ago(1))
    usage_rig.run("rotate", "due")

    assert status_row(usage_rig)["new_key_first_used_at"] == format_time(first)
    assert plan_entry(usage_rig)["new_key_first_used_at"] == format_time(first)


def test_the_first_use_is_audited_once(usage_rig: Rig) -> None:
    new_key = in_grace(usage_rig)
    usage_rig.emulator.mark_used(new_key, a_moment_ago(5))
    usage_rig.run("rotate", "due")
    usage_rig.run("rotate", "due")

    store = usage_rig.store()
    seen = [e for e in store.events(policy="app") if e.outcome == "first_used"]
    store.dispose()
    assert len(seen) == 1
    assert seen[0].details["key_id"] == new_key


def test_an_unused_new_key_shows_no_first_use(usage_rig: Rig) -> None:
    in_grace(usage_rig)
    usage_rig.run("rotate", "due")

    assert status_row(usage_rig)["new_key_first_used_at"] is None
    assert plan_entry(usage_rig)["new_key_first_used_at"] is None


def test_a_vendor_without_usage_data_shows_no_first_use(rig_factory: RigFactory) -> None:
    rig = rig_factory("scale_agentex")
    in_grace(rig)
    rig.run("rotate", "due")

    assert status_row(rig)["new_key_first_used_at"] is None
    assert plan_entry(rig)["new_key_first_used_at"] is None
