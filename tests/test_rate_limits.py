"""Vendor rate limits: paced proactively per vendor account, and waited out when hit anyway."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotator.config.loader import parse_config
from rotator.errors import VendorRateLimited
from rotator.providers.digitalocean_gradient import DigitalOceanGradientSettings
from rotator.providers.ratelimit import Limiter, RateLimit, limiter_for
from rotator.providers.registry import provider_class
from rotator.sandbox.digitalocean_gradient import DigitalOceanGradientEmulator
from rotator.sandbox.server import EmulatorServer, Slot
from rotator.secret import Secret
from tests.support.rig import MANAGEMENT_TOKEN, Rig

RigFactory = Callable[[str], Rig]
VENDOR = "digitalocean_gradient"


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_limiter_lets_a_burst_through_then_paces_to_the_rate() -> None:
    fake = FakeTime()
    limiter = Limiter(RateLimit(requests=3, per="1s"), clock=fake.clock, sleep=fake.sleep)

    waits = [limiter.acquire() for _ in range(5)]

    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([1 / 3, 1 / 3])


def test_limiter_spaces_out_threads_that_wait_at_once() -> None:
    limiter = Limiter(RateLimit(requests=10, per="1s"))
    for _ in range(10):
        limiter.acquire()
    finished: list[float] = []

    def call() -> None:
        limiter.acquire()
        finished.append(time.monotonic())

    threads = [threading.Thread(target=call) for _ in range(3)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert max(finished) - started >= 0.29


def test_one_vendor_account_has_one_limiter() -> None:
    limit = RateLimit(requests=250, per="1m")
    token = Secret("account-one-token")

    same = limiter_for(VENDOR, "https://api", token, limit)

    assert limiter_for(VENDOR, "https://api", Secret("account-one-token"), limit) is same
    assert limiter_for(VENDOR, "https://api", Secret("account-two-token"), limit) is not same


def test_digitalocean_paces_itself_to_its_documented_limit_by_default() -> None:
    settings = DigitalOceanGradientSettings.model_validate({"type": VENDOR, "token": Secret("t")})

    assert settings.rate_limit == RateLimit(requests=250, per="1m")


def test_rate_limit_is_set_per_provider_and_null_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("T", "token-value-123")
    config = parse_config(
        textwrap.dedent(
            """
            vault: {address: "http://127.0.0.1:8200", auth: {method: token, token: "${T}"}}
            providers:
              slow: {type: digitalocean_gradient, token: "${T}",
                     rate_limit: {requests: 10, per: 1h}}
              unpaced: {type: digitalocean_gradient, token: "${T}", rate_limit: null}
            policies:
              app: {provider: slow, key: {agent_uuid: a, api_key_uuid: k},
                    vault: {path: apps/app, field: api_key}, schedule: {every: 30d}}
            """
        ),
        "rotator.yaml",
        provider_class,
    )

    assert config.providers["slow"].rate_limit == RateLimit(requests=10, per="1h")
    assert config.providers["unpaced"].rate_limit is None


@pytest.fixture
def do_server() -> Iterator[tuple[DigitalOceanGradientEmulator, EmulatorServer]]:
    emulator = DigitalOceanGradientEmulator({MANAGEMENT_TOKEN}, hourly_limit=2)
    with EmulatorServer(emulator) as server:
        yield emulator, server


def spent_budget(
    do_server: tuple[DigitalOceanGradientEmulator, EmulatorServer],
) -> tuple[Any, Any, Slot]:
    """A provider whose two calls spent the emulator's hourly budget of two."""
    emulator, server = do_server
    slot = emulator.seed_slot()
    cls = provider_class(VENDOR)
    settings = cls.settings_model.model_validate(
        {"type": VENDOR, "token": Secret(MANAGEMENT_TOKEN), "base_url": server.vendor_url}
    )
    provider = cls(settings, Secret(MANAGEMENT_TOKEN))
    selector = cls.selector_model.model_validate(slot.selector)
    provider.list_keys(selector)
    provider.list_keys(selector)
    return provider, selector, slot


def test_digitalocean_hourly_limit_is_waited_out_until_the_reset(
    do_server: tuple[DigitalOceanGradientEmulator, EmulatorServer],
) -> None:
    emulator, _ = do_server
    provider, selector, slot = spent_budget(do_server)
    emulator.clock_offset = 3600 - 2  # the first counted call expires in 2 s

    keys = provider.list_keys(selector)

    assert [k.key_id for k in keys] == [slot.key_id]
    assert emulator.limited == 1


def test_digitalocean_hourly_limit_beyond_the_wait_cap_fails_until_the_reset(
    do_server: tuple[DigitalOceanGradientEmulator, EmulatorServer],
) -> None:
    emulator, _ = do_server
    provider, selector, _ = spent_budget(do_server)

    with pytest.raises(VendorRateLimited) as caught:
        provider.list_keys(selector)

    assert emulator.limited == 1
    assert caught.value.retry_at is not None
    assert abs(caught.value.retry_at - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(
        minutes=1
    )
    assert "hourly" in str(caught.value)


def test_a_rotation_stopped_by_the_hourly_limit_is_retried_after_the_reset(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory(VENDOR)
    rig.add_policy("app", strategy="create_then_delete")
    emulator = rig.emulator
    assert isinstance(emulator, DigitalOceanGradientEmulator)
    emulator.hourly_limit = 1

    result = rig.run("rotate", "now", "app", "--json")

    assert json.loads(result.stdout)["result"] == "failed"
    store = rig.store()
    [rotation] = store.rotations_for("app")
    store.dispose()
    assert rotation.next_attempt_at is not None
    reset = datetime.now(UTC) + timedelta(hours=1)
    assert abs(rotation.next_attempt_at - reset) < timedelta(minutes=1)


def test_rotate_all_paced_by_the_limiter_meets_no_429(rig_factory: RigFactory) -> None:
    rig = rig_factory(VENDOR)
    emulator = rig.emulator
    assert isinstance(emulator, DigitalOceanGradientEmulator)
    emulator.burst_limit, emulator.burst_window = 10, 1.0
    for n in range(8):
        rig.add_policy(f"p{n}", strategy="create_then_delete", grace="0s")
    config = rig.config_path.read_text()
    rig.config_path.write_text(
        config.replace("timeout: 5.0", "timeout: 5.0\n    rate_limit: {requests: 5, per: 1s}")
    )

    result = rig.run("rotate", "now", "--all", "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    assert emulator.limited == 0
