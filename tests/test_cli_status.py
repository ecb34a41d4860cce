"""``rotator status``: what an on-call operator reads at 3 a.m., on a terminal and in a pipe."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.rig import Rig, migrate

RigFactory = Callable[[str], Rig]
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
LONG_NAME = "legacy-support-bot-for-the-billing-team"


def status_json(rig: Rig) -> dict[str, object]:
    result = rig.run("status", "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_status_in_a_pipe_is_tab_separated_lines_with_a_header_and_full_names(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy(LONG_NAME, strategy="create_then_delete")
    rig.add_policy("app", strategy="create_then_delete")

    lines = rig.run("status").stdout.splitlines()

    header = lines[0].split("\t")
    assert header[:2] == ["policy", "provider"]
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    assert [row["policy"] for row in rows] == [LONG_NAME, "app"]
    assert rows[0]["next_due"] == "now (never rotated)"
    assert "─" not in rig.run("status").stdout


def test_status_on_a_terminal_never_truncates_a_policy_name(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy(LONG_NAME, strategy="create_then_delete")
    rig.run("rotate", "now", LONG_NAME)

    result = rig.run_on_terminal("status", columns=80)

    assert result.returncode == 0, result.stdout
    screen = result.stdout

    assert LONG_NAME in screen


def test_status_shows_a_policy_flagged_by_reconcile_as_needing_attention(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="0s")
    rig.run("rotate", "now", "app")
    current = rig.vault_metadata("app")["rotator.api_key.key_id"]
    rig.emulator.remove_key(spec.slot.selector, current)
    rig.run("reconcile", "--apply", "--yes")

    row = status_json(rig)

    assert row["needs_attention"] is True
    assert current in str(row["attention"])
    assert ISO_Z.match(str(row["attention_since"]))
    assert any("needs attention since" in b for b in row["blocked_by"])  # type: ignore[attr-defined]
    assert "needs attention since" in rig.run("status").stdout


def test_status_shows_a_pending_retry_with_its_time_and_attempt(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete", grace="0s")
    rig.fail_every_create()
    rig.run("rotate", "now", "app")

    row = status_json(rig)

    assert ISO_Z.match(str(row["retry_at"]))
    assert row["attempts"] == 1
    assert row["max_attempts"] == 5
    assert row["needs_attention"] is False
    [blocker] = row["blocked_by"]  # type: ignore[misc]
    assert blocker.startswith(f"retrying at {row['retry_at']} (attempt 2 of 5)")


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_status_shows_the_lock_held_by_another_process(
    rig_factory: RigFactory, tmp_path: object, backend: str
) -> None:
    rig = rig_factory("digitalocean_gradient")
    if backend == "sqlite":
        rig.database_url = f"sqlite:///{rig.tmp / 'rotator.db'}"
        migrate(rig.database_url)
    rig.add_policy("app", strategy="create_then_delete", grace="0s")
    method, path = rig.emulator.operations["create"]
    hold = rig.server.hold(method, path, after=False, resume=True)
    process = rig.spawn("rotate", "now", "app")
    try:
        hold.wait_arrived()
        row = status_json(rig)
    finally:
        hold.release()
        process.communicate(timeout=60)

    assert row["lock_held"] is True
    assert "another rotator process holds this policy's lock now" in row["blocked_by"]  # type: ignore[operator]
    assert status_json(rig)["lock_held"] is False


def test_status_during_a_first_rotation_in_grace_counts_from_that_rotation(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete", grace="1h")
    rig.run("rotate", "now", "app")

    row = status_json(rig)

    assert row["in_flight"] == "grace"
    assert row["last_rotated_at"] is not None
    grace_until = datetime.fromisoformat(str(row["grace_until"]))
    assert datetime.fromisoformat(str(row["next_due"])) == grace_until + timedelta(days=30)
    assert row["due_now"] is False
    assert "never" not in rig.run("status").stdout


def test_status_json_holds_machine_values_only(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete", grace="0s")
    rig.run("rotate", "now", "app")
    rig.add_policy("fresh", strategy="create_then_delete")

    done, fresh = (json.loads(line) for line in rig.run("status", "--json").stdout.splitlines())

    assert isinstance(done["key_age_seconds"], int)
    assert "key_age" not in done
    for key in ("last_rotated_at", "next_due", "key_since"):
        assert ISO_Z.match(done[key]), key
    assert datetime.fromisoformat(done["next_due"]) > datetime.now(UTC)
    assert fresh["next_due"] is None
    assert fresh["due_now"] is True
    assert fresh["current_key_id"] is None
    assert "-" not in fresh.values()
    assert "now" not in fresh.values()


def test_status_json_carries_the_whole_last_error(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete", grace="0s")
    rig.fail_every_create()
    outcome = json.loads(rig.run("rotate", "now", "app", "--json").stdout)

    row = status_json(rig)

    assert row["last_error"] == outcome["message"]
    assert len(str(row["last_error"])) > 120


def test_status_shows_a_rotation_that_ran_out_of_attempts_as_needing_attention(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.one_attempt_left("app")
    rig.run("rotate", "due")

    row = status_json(rig)

    assert row["needs_attention"] is True
    assert row["retry_at"] is None
    assert "stopped in state minting after 5 attempts" in str(row["attention"])
    [blocker] = row["blocked_by"]  # type: ignore[misc]
    assert blocker.startswith("needs attention since ")
    assert "rotator rotate now app" in blocker
