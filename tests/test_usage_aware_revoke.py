"""Usage-aware revoke: grace is extended while consumers still use the old key.

Engine-level over PostgreSQL, OpenBao and the emulators of the vendors that report key
usage (H2O GPTe, Latitude.sh); a consumer's use of a key is set through the emulator's
control. Time passes on a ``Timeline``: the engine's clock runs ahead instead of the
test sleeping. Where a separate ``rotator`` process (which reads the real clock) is killed
mid-revoke, the timeline starts in the past and catches up with the real clock instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from rotator.cli.output import outcome_json
from rotator.metrics import StateCollector
from rotator.observe import read
from rotator.providers.registry import provider_class
from tests.support.rig import PolicySpec, Rig
from tests.support.webhook import WebhookReceiver

RigFactory = Callable[[str], Rig]
USAGE_VENDORS = ["h2ogpte", "latitudesh"]
GRACE = "1s"
#: How long the old key must go unused before it is revoked (``revoke_when_unused.quiet``).
QUIET = 4


def usage_policy(rig: Rig, then: str = "revoke", max_extension: str = f"{QUIET}s") -> PolicySpec:
    spec = rig.add_policy("app", strategy="create_then_delete", grace=GRACE)
    spec.revoke_when_unused = f"{{quiet: {QUIET}s, max_extension: {max_extension}, then: {then}}}"
    rig.write_config()
    return spec


class Timeline:
    """Policy ``app`` rotated as time passes on the engine's clock, ``start`` seconds from now
    (negative: in the past, for a test whose other ``rotator`` process reads the real clock
    once the timeline has caught up with it)."""

    def __init__(self, rig: Rig, *, start: float = 0) -> None:
        self.rig = rig
        self.ahead = timedelta(seconds=start)

    def wait(self, seconds: float) -> None:
        self.ahead += timedelta(seconds=seconds)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.ahead

    def rotate(self, *args: str) -> dict[str, Any]:
        """``rotate now app [--emergency]`` or ``rotate due``: the outcome as ``--json`` has it."""
        with self.rig.engine_ahead(seconds=self.ahead.total_seconds()) as engine:
            if args[0] == "now":
                outcome = engine.rotate_now("app", emergency="--emergency" in args)
            else:
                outcome = engine.rotate_if_due("app")
        return outcome_json(outcome)

    def use_old_key(self, spec: PolicySpec, calls: int = 1) -> None:
        self.rig.emulator.mark_used(spec.slot.key_id, self.now(), calls=calls)


def grace_events(rig: Rig) -> list[tuple[str, dict[str, object]]]:
    store = rig.store()
    events = [(e.outcome, e.details) for e in store.events(policy="app") if e.step == "grace"]
    store.dispose()
    return events


def rotation(rig: Rig) -> object:
    store = rig.store()
    rotations = store.rotations_for("app")
    store.dispose()
    return rotations[-1]


#: How long ``used_through_two_grace_ends`` lets pass: just past grace, then past the extension.
THROUGH_GRACE = (1.1, QUIET + 0.1)


def used_through_two_grace_ends(timeline: Timeline, spec: PolicySpec) -> None:
    """Rotate, then use the old key at the end of grace and again at the end of the extension."""
    to_grace_end, to_extension_end = THROUGH_GRACE
    timeline.rotate("now", "app")
    timeline.wait(to_grace_end)
    timeline.use_old_key(spec)
    timeline.rotate("due")
    timeline.wait(to_extension_end)
    timeline.use_old_key(spec)


@pytest.fixture(params=USAGE_VENDORS)
def usage_rig(request: pytest.FixtureRequest, rig_factory: RigFactory) -> Rig:
    return rig_factory(request.param)


def test_vendors_that_report_usage_declare_it() -> None:
    assert provider_class("h2ogpte").capabilities.reports_usage
    assert provider_class("latitudesh").capabilities.reports_usage
    assert not provider_class("digitalocean_gradient").capabilities.reports_usage
    assert not provider_class("scale_agentex").capabilities.reports_usage


def test_an_old_key_used_within_quiet_extends_grace_and_is_audited(usage_rig: Rig) -> None:
    spec = usage_policy(usage_rig)
    timeline = Timeline(usage_rig)
    assert timeline.rotate("now", "app")["result"] == "waiting"
    timeline.wait(1.1)
    timeline.use_old_key(spec)

    outcome = timeline.rotate("due")

    assert outcome["result"] == "grace_extended"
    assert spec.slot.key_id in usage_rig.live_keys("app")
    extended = [d for o, d in grace_events(usage_rig) if o == "extended"]
    assert len(extended) == 1
    assert spec.slot.key_id in str(extended[0]["message"])
    assert " used at " in str(extended[0]["message"])


def test_an_old_key_unused_since_the_new_key_was_stored_is_revoked_at_grace_end(
    usage_rig: Rig,
) -> None:
    spec = usage_policy(usage_rig)
    usage_rig.emulator.mark_used(spec.slot.key_id, datetime(2026, 1, 1, tzinfo=UTC))
    timeline = Timeline(usage_rig)
    timeline.rotate("now", "app")
    timeline.wait(1.1)

    assert timeline.rotate("due")["result"] == "completed"
    assert spec.slot.key_id not in usage_rig.live_keys("app")


def test_the_extension_repeats_while_the_old_key_stays_in_use(usage_rig: Rig) -> None:
    spec = usage_policy(usage_rig, max_extension=f"{3 * QUIET}s")
    timeline = Timeline(usage_rig)
    used_through_two_grace_ends(timeline, spec)

    assert timeline.rotate("due")["result"] == "grace_extended"
    assert [o for o, _ in grace_events(usage_rig)].count("extended") == 2
    assert spec.slot.key_id in usage_rig.live_keys("app")


def test_max_extension_reached_with_then_revoke_revokes_the_old_key(usage_rig: Rig) -> None:
    spec = usage_policy(usage_rig, then="revoke", max_extension=f"{QUIET}s")
    timeline = Timeline(usage_rig)
    used_through_two_grace_ends(timeline, spec)

    assert timeline.rotate("due")["result"] == "completed"
    assert spec.slot.key_id not in usage_rig.live_keys("app")
    store = usage_rig.store()
    revoke = next(e for e in store.events(policy="app") if e.step == "revoke")
    store.dispose()
    assert f"max_extension {QUIET}s spent, revoked anyway" in str(revoke.details["note"])


def test_max_extension_reached_with_then_hold_keeps_the_old_key_and_flags_attention(
    usage_rig: Rig,
) -> None:
    spec = usage_policy(usage_rig, then="hold", max_extension=f"{QUIET}s")
    timeline = Timeline(usage_rig)
    used_through_two_grace_ends(timeline, spec)

    outcome = timeline.rotate("due")

    assert outcome["result"] == "needs_attention"
    assert spec.slot.key_id in usage_rig.live_keys("app")
    held = rotation(usage_rig)
    assert held.needs_attention  # type: ignore[attr-defined]
    assert spec.slot.key_id in str(held.last_error)  # type: ignore[attr-defined]
    assert "last used at" in str(held.last_error)  # type: ignore[attr-defined]


def test_emergency_revokes_the_old_key_even_while_it_is_in_use(usage_rig: Rig) -> None:
    spec = usage_policy(usage_rig)
    timeline = Timeline(usage_rig)
    timeline.use_old_key(spec)

    assert timeline.rotate("now", "app", "--emergency")["result"] == "completed"
    assert spec.slot.key_id not in usage_rig.live_keys("app")
    assert "extended" not in [o for o, _ in grace_events(usage_rig)]


def test_the_extension_survives_a_restart_and_counts_from_the_original_grace_end(
    usage_rig: Rig,
) -> None:
    spec = usage_policy(usage_rig, then="revoke", max_extension=f"{QUIET}s")
    timeline = Timeline(usage_rig)
    timeline.rotate("now", "app")
    timeline.wait(1.1)
    timeline.use_old_key(spec)
    timeline.rotate("due")
    extended = rotation(usage_rig)

    assert extended.grace_original_until is not None  # type: ignore[attr-defined]
    assert extended.grace_until > extended.grace_original_until  # type: ignore[attr-defined]


def test_validate_refuses_revoke_when_unused_for_a_vendor_without_usage_data(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("digitalocean_gradient")
    spec = rig.add_policy("app", strategy="create_then_delete", grace="1h")
    spec.revoke_when_unused = "{quiet: 1h}"
    rig.write_config()

    checked = rig.run("validate")

    assert checked.returncode == 2
    said = checked.stdout + checked.stderr
    assert "revoke_when_unused" in said
    assert "does not report when a key was last used" in said


def gauge(rig: Rig, name: str, now: datetime) -> float | None:
    engine = rig.engine()
    try:
        collector = StateCollector(lambda: read(engine, dict, now), lambda: now)
        samples = [s for family in collector.collect() for s in family.samples if s.name == name]
    finally:
        engine.close()
    return samples[0].value if samples else None


def test_the_old_key_in_use_gauge_is_1_while_grace_is_extended(usage_rig: Rig) -> None:
    spec = usage_policy(usage_rig)
    timeline = Timeline(usage_rig)
    timeline.rotate("now", "app")
    assert gauge(usage_rig, "rotator_old_key_in_use", timeline.now()) == 0.0
    timeline.wait(1.1)
    timeline.use_old_key(spec)
    timeline.rotate("due")

    assert gauge(usage_rig, "rotator_old_key_in_use", timeline.now()) == 1.0


def test_an_extension_is_notified_naming_the_old_key_and_its_last_use(usage_rig: Rig) -> None:
    receiver = WebhookReceiver()
    try:
        spec = usage_policy(usage_rig)
        usage_rig.extra_config = f"""
        notifications:
          webhooks:
            ops: {{url: "{receiver.url}", format: json}}
        """
        usage_rig.write_config()
        timeline = Timeline(usage_rig)
        timeline.rotate("now", "app")
        timeline.wait(1.1)
        timeline.use_old_key(spec)

        assert timeline.rotate("due")["result"] == "grace_extended"
    finally:
        receiver.stop()
    [sent] = receiver.received
    assert sent["result"] == "grace_extended"
    assert spec.slot.key_id in sent["message"]
    assert "consumers have not moved" in sent["message"]


def test_a_kill_at_the_revoke_after_an_extension_resumes_to_completion(usage_rig: Rig) -> None:
    spec = usage_policy(usage_rig, then="revoke", max_extension=f"{QUIET}s")
    # Caught up with the real clock that the killed process reads, instead of sleeping.
    timeline = Timeline(usage_rig, start=-sum(THROUGH_GRACE))
    used_through_two_grace_ends(timeline, spec)
    method, path = usage_rig.emulator.operations["revoke"]
    hold = usage_rig.server.hold(method, path, after=True)
    killed = usage_rig.spawn("rotate", "due", "--json")
    hold.wait_arrived()
    usage_rig.kill(killed)
    hold.release()

    assert timeline.rotate("due")["result"] == "completed"
    assert spec.slot.key_id not in usage_rig.live_keys("app")
    assert usage_rig.vendor_accepts("app", usage_rig.vault_secret("app"))
    assert [o for o, _ in grace_events(usage_rig)].count("extended") == 1


def test_the_sandbox_control_api_marks_a_key_used(usage_rig: Rig) -> None:
    spec = usage_policy(usage_rig)
    at = "2026-11-01T10:00:00+00:00"

    answer = httpx.post(
        f"{usage_rig.server.base_url}/_sandbox/usage", json={"key_id": spec.slot.key_id, "at": at}
    )

    assert answer.status_code == 204
    engine = usage_rig.engine()
    try:
        policy = engine.policy("app")
        old = engine.provider_for(policy).find_key(policy.selector, spec.slot.key_id)
    finally:
        engine.close()
    assert old is not None
    assert old.last_used_at == datetime.fromisoformat(at)


def test_an_h2o_extension_counts_the_calls_since_the_new_key_was_stored(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory("h2ogpte")
    spec = usage_policy(rig)
    rig.emulator.mark_used(spec.slot.key_id, datetime(2026, 1, 1, tzinfo=UTC), calls=7)
    timeline = Timeline(rig)
    timeline.rotate("now", "app")
    timeline.wait(1.1)
    timeline.use_old_key(spec, calls=5)

    timeline.rotate("due")

    [extended] = [d for o, d in grace_events(rig) if o == "extended"]
    assert "5 calls since the new key was stored" in str(extended["message"])


def test_a_held_old_key_is_revoked_by_rotate_now_once_it_goes_unused(usage_rig: Rig) -> None:
    spec = usage_policy(usage_rig, then="hold", max_extension=f"{QUIET}s")
    timeline = Timeline(usage_rig)
    used_through_two_grace_ends(timeline, spec)
    assert timeline.rotate("due")["result"] == "needs_attention"
    timeline.wait(QUIET + 0.1)

    assert timeline.rotate("now", "app")["result"] == "completed"
    assert spec.slot.key_id not in usage_rig.live_keys("app")
    assert not rotation(usage_rig).needs_attention  # type: ignore[attr-defined]
