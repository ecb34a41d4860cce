"""When a policy is due: from the database's last rotation, with windows and jitter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from rotator.audit.records import PolicyState
from rotator.config.model import ScheduleConfig
from rotator.engine.schedule import NEVER_ROTATED, due_window, next_due

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def is_due(policy: str, schedule: ScheduleConfig, state: PolicyState | None, now: datetime) -> bool:
    return due_window(policy, schedule, state, now).contains(now)


def rotated(at: datetime | None = None, adopted: datetime | None = None) -> PolicyState:
    return PolicyState("p", "k", 1, at, "r", adopted)


def schedule(**fields: object) -> ScheduleConfig:
    return ScheduleConfig.model_validate(fields)


def test_a_policy_never_rotated_is_due_at_once() -> None:
    assert next_due("p", schedule(every="30d"), None, NOW) == NEVER_ROTATED
    assert is_due("p", schedule(every="30d"), None, NOW)


def test_an_adopted_policy_waits_for_its_schedule() -> None:
    state = rotated(adopted=NOW - timedelta(days=1))
    assert next_due("p", schedule(every="30d"), state, NOW) == NOW + timedelta(days=29)
    assert not is_due("p", schedule(every="30d"), state, NOW)


def test_every_counts_from_the_last_completed_rotation() -> None:
    state = rotated(NOW - timedelta(days=31))
    assert next_due("p", schedule(every="30d"), state, NOW) == NOW - timedelta(days=1)
    assert is_due("p", schedule(every="30d"), state, NOW)


def test_cron_is_the_next_fire_after_the_last_rotation() -> None:
    monday_3am = schedule(cron="0 3 * * MON")
    state = rotated(datetime(2026, 11, 16, 3, 0, 5, tzinfo=UTC))  # a Monday
    assert next_due("p", monday_3am, state, NOW) == datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def test_cron_day_of_week_zero_is_sunday() -> None:
    sunday = schedule(cron="0 0 * * 0")
    state = rotated(datetime(2026, 11, 24, tzinfo=UTC))
    assert next_due("p", sunday, state, NOW).weekday() == 6


def test_a_missed_window_waits_for_the_next_fire() -> None:
    daily_with_window = schedule(cron="0 3 * * *", window="2h")
    state = rotated(datetime(2026, 11, 23, 3, 0, 5, tzinfo=UTC))
    window = due_window("p", daily_with_window, state, NOW)
    assert window.start == datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    assert not window.contains(NOW)


def test_inside_the_window_the_policy_is_due() -> None:
    daily_with_window = schedule(cron="0 11 * * *", window="2h")
    state = rotated(datetime(2026, 11, 23, 11, 0, 5, tzinfo=UTC))
    assert is_due("p", daily_with_window, state, NOW)


def test_jitter_is_the_same_for_every_process_and_within_bounds() -> None:
    jittered = schedule(every="1d", jitter="1h")
    state = rotated(NOW - timedelta(days=2))
    first = next_due("p", jittered, state, NOW)
    assert first == next_due("p", jittered, state, NOW + timedelta(minutes=5))
    base = NOW - timedelta(days=1)
    assert base <= first < base + timedelta(hours=1)
    assert first != next_due("other-policy", jittered, state, NOW)


def test_cron_schedules_run_in_utc_unless_a_timezone_is_given() -> None:
    daily_3am = schedule(cron="0 3 * * *")
    state = rotated(datetime(2026, 11, 23, 4, 0, tzinfo=UTC))
    assert next_due("p", daily_3am, state, NOW) == datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def test_a_cron_schedule_with_a_timezone_fires_at_that_zones_wall_clock_time() -> None:
    berlin_3am = schedule(cron="0 3 * * *", timezone="Europe/Berlin")  # UTC+1 in November
    state = rotated(datetime(2026, 11, 23, 4, 0, tzinfo=UTC))
    assert next_due("p", berlin_3am, state, NOW) == datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def test_a_cron_schedule_with_a_timezone_follows_daylight_saving_time() -> None:
    new_york_9am = schedule(cron="0 9 * * *", timezone="America/New_York")
    summer = rotated(datetime(2026, 7, 1, 0, 0, tzinfo=UTC))
    winter = rotated(datetime(2026, 12, 1, 0, 0, tzinfo=UTC))
    assert next_due("p", new_york_9am, summer, NOW).hour == 13  # EDT, UTC-4
    assert next_due("p", new_york_9am, winter, NOW).hour == 14  # EST, UTC-5


def test_an_unknown_timezone_is_refused_naming_an_example() -> None:
    with pytest.raises(ValidationError, match=r"IANA.*Europe/Berlin"):
        schedule(cron="0 3 * * *", timezone="Mars/Olympus")


def test_a_timezone_on_an_every_schedule_is_refused() -> None:
    with pytest.raises(ValidationError, match="only with cron"):
        schedule(every="30d", timezone="Europe/Berlin")
