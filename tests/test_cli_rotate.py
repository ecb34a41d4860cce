"""``rotate now`` and ``rotate due`` as an operator and a CronJob read them."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from typing import Any

from rotator.vocabulary import Result
from tests.support.rig import PolicySpec, Rig

RigFactory = Callable[[str], Rig]


def outcomes(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def first_rotation(rig_factory: RigFactory, grace: str) -> tuple[Rig, PolicySpec, dict[str, Any]]:
    """A rig whose policy ``app`` has been rotated once (``create_then_delete``, ``grace``)."""
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete", grace=grace)
    [first] = outcomes(rig.run("rotate", "now", "app", "--json"))
    return rig, spec, first


def test_rotate_now_during_grace_says_in_grace_and_makes_no_new_key(
    rig_factory: RigFactory,
) -> None:
    rig, spec, first = first_rotation(rig_factory, "1h")
    creates = rig.server.calls("POST")

    again = rig.run("rotate", "now", "app")

    assert again.returncode == 0
    assert "in_grace" in again.stdout
    assert (
        f"not rotated: rotation {first['rotation_id']} is in grace until {first['grace_until']} "
        f"(old key {spec.slot.key_id} still live); the new key is already in Vault. "
        "Use --emergency to revoke the old key now, or wait." in again.stdout
    )
    assert rig.server.calls("POST") == creates
    assert outcomes(rig.run("rotate", "now", "app", "--json"))[0]["result"] == "in_grace"


def test_rotate_now_after_grace_finishes_that_rotation(rig_factory: RigFactory) -> None:
    rig, spec, first = first_rotation(rig_factory, "1h")

    with rig.engine_ahead(hours=1, seconds=1) as later:
        second = later.rotate_now("app")

    assert second.result is Result.COMPLETED
    assert second.rotation_id == first["rotation_id"]
    assert rig.live_keys("app") == [first["new_key_id"]]
    assert spec.slot.key_id not in rig.live_keys("app")


def test_rotate_now_emergency_during_grace_says_two_keys_were_revoked(
    rig_factory: RigFactory,
) -> None:
    rig, spec, first = first_rotation(rig_factory, "1h")

    result = rig.run("rotate", "now", "app", "--emergency", "--json")

    [outcome] = outcomes(result)
    assert result.returncode == 0, result.stdout
    assert outcome["result"] == "completed"
    assert "emergency: 2 keys revoked" in outcome["message"]
    assert spec.slot.key_id in outcome["message"]
    assert first["new_key_id"] in outcome["message"]
    assert rig.live_keys("app") == [outcome["new_key_id"]]


def test_rotate_due_waiting_for_its_retry_time_says_retrying_at_and_exits_0(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete", grace="0s")
    rig.fail_every_create()
    attempt = rig.run("rotate", "due", "--json")

    waiting = rig.run("rotate", "due")

    assert attempt.returncode == 1
    assert waiting.returncode == 0, waiting.stdout
    assert "retry_pending" in waiting.stdout
    assert re.search(
        r"retrying at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(attempt 2 of 5\)", waiting.stdout
    )


def test_rotate_due_exits_1_when_a_policy_becomes_needs_attention_in_this_run_only(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.one_attempt_left("app")

    flagged = rig.run("rotate", "due", "--json")
    later = rig.run("rotate", "due", "--json")

    assert flagged.returncode == 1
    assert outcomes(flagged)[0]["result"] == "needs_attention"
    assert later.returncode == 0
    assert outcomes(later)[0]["result"] == "needs_attention"


def test_rotate_due_exits_0_for_a_policy_flagged_by_reconcile_earlier(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="0s", every="1s")
    rig.run("rotate", "now", "app")
    rig.emulator.remove_key(spec.slot.selector, rig.vault_metadata("app")["rotator.api_key.key_id"])
    rig.run("reconcile", "--apply", "--yes")

    due = rig.run("rotate", "due")

    assert due.returncode == 0
    assert "needs_attention" in due.stdout


def test_results_come_in_the_order_of_the_configuration_file(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    names = ["zeta", "alpha", "mid", "beta"]
    for name in names:
        rig.add_policy(name, strategy="create_then_delete", grace="0s")

    rotated = rig.run("rotate", "due", "--json", "--concurrency", "4")
    idle = rig.run("rotate", "due", "--json")
    everything = rig.run("rotate", "now", "--all", "--json", "--concurrency", "4")

    assert [o["policy"] for o in outcomes(rotated)] == names
    assert [o["policy"] for o in outcomes(idle)] == names
    assert [o["policy"] for o in outcomes(everything)] == names


def test_times_in_human_output_are_iso_8601_with_seconds_and_z(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("waits", strategy="create_then_delete", grace="1h")
    other = rig.add_policy("adopted", strategy="create_then_delete")

    printed = [
        rig.run("adopt", "adopted", "--key-id", other.slot.key_id).stdout,
        rig.run("rotate", "now", "waits").stdout,
        rig.run("rotate", "due").stdout,
        rig.run("rotate", "now", "waits").stdout,
    ]

    text_out = "\n".join(printed)
    assert spec.slot.key_id in text_out
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text_out)
    assert "+00:00" not in text_out
    assert not re.search(r":\d\d\.\d+", text_out)


def test_adopt_is_labelled_adopted(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete")

    adopted = rig.run("adopt", "app", "--key-id", spec.slot.key_id)

    assert adopted.returncode == 0
    assert adopted.stdout.split()[1] == "adopted"


def test_on_a_terminal_logs_stay_out_of_the_results_unless_verbose(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete", grace="1h")
    rig.add_policy("other", strategy="create_then_delete", grace="1h")

    quiet_screen = rig.run_on_terminal("rotate now app").stdout
    verbose_screen = rig.run_on_terminal("-v rotate now other").stdout

    assert "waiting" in quiet_screen
    assert "mint started" not in quiet_screen
    assert "mint started" in verbose_screen


def test_rotator_log_level_sets_the_level_on_a_terminal(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete", grace="1h")

    screen = rig.run_on_terminal("rotate now app", env={"ROTATOR_LOG_LEVEL": "info"}).stdout

    assert "mint started" in screen


def test_quiet_prints_only_failures(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("fine", strategy="create_then_delete", grace="0s")
    broken = rig.add_policy("broken", strategy="create_then_delete", grace="0s")
    rig.server.fail("POST", broken.slot.selector["agent_uuid"], status=503, times=1000)

    result = rig.run("-q", "rotate", "now", "--all")

    assert result.returncode == 1
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["broken"]
    assert result.stderr.strip() == "" or all(
        json.loads(line)["level"] == "error" for line in result.stderr.splitlines()
    )


def test_off_a_terminal_logs_are_json_lines_on_stderr_at_info(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete", grace="1h")

    result = rig.run("rotate", "now", "app")

    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(e["event"] == "mint started" and e["level"] == "info" for e in events)


def test_retry_log_events_carry_the_policy_and_the_rotation_id(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete", grace="0s")
    method, path = rig.emulator.operations["create"]
    rig.server.fail(method, path, status=429, times=1, retry_after=0.1)

    result = rig.run("rotate", "now", "app", "--json")

    [outcome] = outcomes(result)
    retries = [
        json.loads(line)
        for line in result.stderr.splitlines()
        if "retry" in json.loads(line)["event"]
    ]
    assert retries, result.stderr
    assert all(r["policy"] == "app" for r in retries)
    assert all(r["rotation_id"] == outcome["rotation_id"] for r in retries)


def test_very_verbose_logs_at_debug_and_the_default_does_not(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete", grace="1h")
    rig.add_policy("other", strategy="create_then_delete", grace="1h")

    default = rig.run("rotate", "now", "app")
    debug = rig.run("-vv", "rotate", "now", "other")

    def levels(result: subprocess.CompletedProcess[str]) -> set[str]:
        return {json.loads(line)["level"] for line in result.stderr.splitlines()}

    assert "debug" not in levels(default)
    assert "debug" in levels(debug)


def test_quiet_and_verbose_together_are_a_usage_error(rig_factory: RigFactory) -> None:
    rig = rig_factory("digitalocean_gradient")
    rig.add_policy("app", strategy="create_then_delete")

    result = rig.run("-q", "-v", "status")

    assert result.returncode == 2
    assert "-q and -v contradict each other" in result.stderr
