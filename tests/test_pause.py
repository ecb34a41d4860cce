"""Pause and resume: an operator holds a policy's rotations, saying why, for a while or for good.

CLI-level over PostgreSQL, OpenBao and an emulator; the fast idle path of
`rotate due` and the daemon are checked with the same pause.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from rotator.audit.pauses import pause_policy, pauses_in_force
from rotator.audit.store import AuditStore
from rotator.config.loader import parse_config
from rotator.engine.idle import idle_outcomes
from rotator.providers.registry import provider_class
from rotator.secret import Secret
from rotator.vocabulary import Result
from tests.support.configs import config_text
from tests.support.rig import Rig
from tests.test_daemon import RunningDaemon, wait_until

RigFactory = Callable[[str], Rig]
VENDOR = "digitalocean_gradient"


@pytest.fixture
def app(rig_factory: RigFactory) -> Rig:
    rig = rig_factory(VENDOR)
    rig.add_policy("app", strategy="create_then_delete", grace="1h")
    return rig


def outcome(result: object) -> dict[str, object]:
    stdout = getattr(result, "stdout", "")
    return dict(json.loads(stdout.splitlines()[-1]))


def test_a_paused_policy_is_not_rotated_by_rotate_due(app: Rig) -> None:
    paused = app.run("pause", "app", "--reason", "vendor outage INC-42")
    assert paused.returncode == 0, paused.stderr

    due = app.run("rotate", "due", "--json")

    assert due.returncode == 0, due.stderr
    assert outcome(due)["result"] == "paused"
    assert "vendor outage INC-42" in str(outcome(due)["message"])
    assert app.vault_version("app") == 1


def test_rotate_now_on_a_paused_policy_asks_for_force_and_shows_the_reason(app: Rig) -> None:
    app.run("pause", "app", "--reason", "change freeze")

    refused = app.run("rotate", "now", "app")

    assert refused.returncode == 1
    assert "change freeze" in refused.stdout
    assert "--force" in refused.stdout
    assert app.vault_version("app") == 1


def test_rotate_now_force_rotates_a_paused_policy(app: Rig) -> None:
    app.run("pause", "app", "--reason", "change freeze")

    forced = app.run("rotate", "now", "app", "--force", "--json")

    assert forced.returncode == 0, forced.stderr
    assert outcome(forced)["result"] == "waiting"
    assert app.vault_version("app") == 2
    store = app.store()
    steps = [(e.step, e.outcome) for e in store.events(policy="app")]
    store.dispose()
    assert ("pause", "overridden") in steps


def test_rotate_now_all_passes_over_a_paused_policy(app: Rig) -> None:
    app.add_policy("other", strategy="create_then_delete", grace="1h")
    app.run("pause", "app", "--reason", "change freeze")

    result = app.run("rotate", "now", "--all", "--json")

    assert result.returncode == 0, result.stderr
    outcomes = {o["policy"]: o["result"] for o in map(json.loads, result.stdout.splitlines())}
    assert outcomes == {"app": "paused", "other": "waiting"}


def test_a_rotation_under_way_still_finishes_while_paused(rig_factory: RigFactory) -> None:
    rig = rig_factory(VENDOR)
    spec = rig.add_policy("app", strategy="create_then_delete", grace="1h")
    rig.run("rotate", "now", "app")
    rig.run("pause", "app", "--reason", "freeze")

    due = rig.later("app", hours=1, seconds=1)

    assert due.result is Result.COMPLETED
    assert not rig.vendor_accepts("app", spec.slot.secret)


def test_resume_lets_the_schedule_rotate_again(app: Rig) -> None:
    app.run("pause", "app", "--reason", "change freeze")
    resumed = app.run("resume", "app")
    assert resumed.returncode == 0, resumed.stderr

    due = app.run("rotate", "due", "--json")

    assert outcome(due)["result"] == "waiting"
    assert app.vault_version("app") == 2


def test_a_pause_until_a_duration_ends_by_itself(app: Rig) -> None:
    app.run("pause", "app", "--reason", "short hold", "--until", "5s")
    assert outcome(app.run("rotate", "due", "--json"))["result"] == "paused"
    store = app.store()
    [pause] = pauses_in_force(store, datetime.now(UTC)).values()
    store.dispose()
    assert pause.until is not None

    due = app.later("app", seconds=(pause.until - datetime.now(UTC)).total_seconds() + 1)

    assert due.result is Result.WAITING


def test_a_pause_until_a_date_is_shown_with_that_date(app: Rig) -> None:
    until = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    app.run("pause", "app", "--reason", "quarter close", "--until", until.isoformat())

    due = app.run("rotate", "due", "--json")

    assert until.isoformat() in str(outcome(due)["message"])


@pytest.mark.parametrize("until", ["tomorrow", "-5m", "2000-01-01T00:00:00+00:00"])
def test_pause_with_an_until_that_is_not_a_future_time_is_refused(app: Rig, until: str) -> None:
    result = app.run("pause", "app", "--reason", "x", "--until", until)

    assert result.returncode == 2
    assert "--until" in result.stderr
    store = app.store()
    assert [e.step for e in store.events(policy="app")] == []
    store.dispose()


def test_pause_of_an_unknown_policy_is_refused(app: Rig) -> None:
    result = app.run("pause", "nope", "--reason", "x")

    assert result.returncode == 2
    assert "no policy named 'nope'" in result.stderr


def test_resume_of_a_policy_not_paused_says_so(app: Rig) -> None:
    result = app.run("resume", "app")

    assert result.returncode == 0
    assert "was not paused" in result.stdout


def test_pause_and_resume_are_audited_with_actor_and_reason(app: Rig) -> None:
    app.run_process("pause", "app", "--reason", "INC-7", env={"ROTATOR_ACTOR": "alice"})
    app.run_process("resume", "app", env={"ROTATOR_ACTOR": "bob"})

    store = app.store()
    recorded = store.events(policy="app")
    store.dispose()
    events = [(e.step, e.outcome, e.details) for e in recorded]
    assert events[0][:2] == ("pause", "succeeded")
    # The actor as every audit event records it: who, then host:pid.
    assert events[0][2]["by"].startswith("alice on ")
    assert recorded[0].actor.startswith("alice on ")
    assert events[0][2]["reason"] == "INC-7"
    assert events[1][:2] == ("resume", "succeeded")
    assert events[1][2]["by"].startswith("bob on ")


def test_status_and_plan_show_the_pause(app: Rig) -> None:
    app.run_process("pause", "app", "--reason", "INC-9", env={"ROTATOR_ACTOR": "alice"})

    status = json.loads(app.run("status", "--json").stdout)
    plan = json.loads(app.run("plan", "app", "--json").stdout)

    assert status["paused"] == plan["paused"]
    assert "INC-9" in status["paused"]
    assert "alice" in status["paused"]


def test_enabled_false_holds_a_policy_permanently(app: Rig) -> None:
    app.config_path.write_text(
        app.config_path.read_text().replace(
            "grace_period: 1h", "grace_period: 1h\n    enabled: false"
        )
    )

    due = app.run("rotate", "due", "--json")
    refused = app.run("rotate", "now", "app")

    assert outcome(due)["result"] == "paused"
    assert "enabled: false" in str(outcome(due)["message"])
    assert refused.returncode == 1
    assert app.vault_version("app") == 1


def test_the_daemon_does_not_rotate_a_paused_policy_and_exports_it(app: Rig) -> None:
    app.run("pause", "app", "--reason", "INC-1")
    daemon = RunningDaemon(app).start()
    try:
        wait_until(lambda: 'rotator_policy_paused{policy="app"} 1.0' in daemon.get("/metrics").text)
        time.sleep(2.5)  # two sweeps
        assert app.vault_version("app") == 1
        assert 'outcome="paused"' not in daemon.get("/metrics").text, "a hold is not a rotation"

        app.run("resume", "app")

        wait_until(lambda: app.vault_version("app") == 2)
        wait_until(lambda: 'rotator_policy_paused{policy="app"} 0.0' in daemon.get("/metrics").text)
    finally:
        daemon.stop()


# -- the fast idle path of `rotate due` ----------------------------------------


@pytest.fixture
def due_store(migrated_database_url: str, monkeypatch: pytest.MonkeyPatch) -> AuditStore:
    monkeypatch.setenv("TEST_VAULT_TOKEN", "vault-token-value")
    monkeypatch.setenv("TEST_DO_TOKEN", "do-token-value")
    store = AuditStore.open(Secret(migrated_database_url))
    # Adopted long ago: due now.
    store.set_policy_state(
        "web", current_key_id="k", adopted_at=datetime.now(UTC) - timedelta(days=90)
    )
    return store


def test_the_idle_path_answers_paused_for_a_due_policy_without_the_engine(
    due_store: AuditStore, migrated_database_url: str
) -> None:
    config = parse_config(
        config_text() + f'database: {{url: "{migrated_database_url}"}}\n', "r.yaml", provider_class
    )
    pause_policy(due_store, "web", reason="INC-3", by="alice", until=None)

    outcomes = idle_outcomes(config)

    assert outcomes is not None
    assert [(o.policy, o.result) for o in outcomes] == [("web", Result.PAUSED)]
    assert "INC-3" in outcomes[0].message
    due_store.close()


def test_the_idle_path_hands_an_expired_pause_to_the_engine(
    due_store: AuditStore, migrated_database_url: str
) -> None:
    config = parse_config(
        config_text() + f'database: {{url: "{migrated_database_url}"}}\n', "r.yaml", provider_class
    )
    pause_policy(
        due_store, "web", reason="INC-3", by="alice", until=datetime.now(UTC) + timedelta(seconds=1)
    )

    assert idle_outcomes(config, datetime.now(UTC) + timedelta(seconds=5)) is None
    due_store.close()
