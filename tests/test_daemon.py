"""The daemon as it runs in production: a subprocess over PostgreSQL, OpenBao and an emulator."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from itertools import pairwise

import httpx
import pytest

from tests.support.rig import Rig
from tests.support.servers import free_port

RigFactory = Callable[[str], Rig]
VENDOR = "digitalocean_gradient"


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout}s")


class RunningDaemon:
    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.port = free_port()
        rig.extra_config = f"""
        daemon: {{port: {self.port}, host: 127.0.0.1, tick: 1s, shutdown_timeout: 5s}}
        """
        rig.write_config()
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> RunningDaemon:
        self.process = self.rig.spawn("daemon")
        wait_until(self.healthy)
        return self

    def healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"daemon exited: {self.process.communicate()[1][-2000:]}")
        try:
            return self.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def stop(self) -> tuple[int, float]:
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.process.communicate()
        return code, time.monotonic() - started


@pytest.fixture
def daemon_rig(rig_factory: RigFactory) -> Iterator[tuple[Rig, RunningDaemon]]:
    rig = rig_factory(VENDOR)
    daemon = RunningDaemon(rig)
    yield rig, daemon
    if daemon.process is not None and daemon.process.poll() is None:
        daemon.process.kill()
        daemon.process.communicate()


def test_the_daemon_rotates_on_schedule_and_reports_metrics(
    daemon_rig: tuple[Rig, RunningDaemon],
) -> None:
    rig, daemon = daemon_rig
    rig.add_policy("app", strategy="create_then_delete", grace="0s", every="3s")
    daemon.start()

    wait_until(lambda: rig.completed_rotations("app") >= 2)
    metrics = daemon.get("/metrics").text
    ready = daemon.get("/readyz")
    code, took = daemon.stop()

    assert 'rotator_rotations_total{outcome="completed",policy="app"' in metrics
    assert 'rotator_key_age_seconds{policy="app"}' in metrics
    assert "rotator_rotations_needing_attention 0.0" in metrics
    assert ready.status_code == 200
    assert ready.json() == {"database": True, "vault": True, "schema": True}
    assert code == 0
    assert took < 6
    assert rig.vendor_accepts("app", rig.vault_secret("app"))


def assert_never_early(rig: Rig, policy: str, every: timedelta) -> None:
    """No rotation started before the previous one completed plus the interval."""
    store = rig.store()
    rotations = sorted(store.rotations_for(policy), key=lambda r: r.created_at)
    store.dispose()
    for previous, following in pairwise(rotations):
        assert previous.completed_at is not None
        earliest = previous.completed_at + every - timedelta(milliseconds=500)
        assert following.created_at >= earliest, "a rotation ran before it was due"


def test_a_restart_neither_repeats_nor_skips_a_rotation(
    daemon_rig: tuple[Rig, RunningDaemon],
) -> None:
    rig, daemon = daemon_rig
    every = timedelta(seconds=8)
    rig.add_policy("app", strategy="create_then_delete", grace="0s", every="8s")
    daemon.start()
    wait_until(lambda: rig.completed_rotations("app") == 1)
    daemon.stop()

    daemon.start()
    time.sleep(2)
    daemon.stop()
    assert_never_early(rig, "app", every)

    time.sleep(8)  # the policy falls due while no daemon runs
    count = rig.completed_rotations("app")
    restarted = time.monotonic()
    daemon.start()
    wait_until(lambda: rig.completed_rotations("app") == count + 1, timeout=15)
    assert time.monotonic() - restarted < 10, "the overdue rotation waited"
    daemon.stop()
    assert_never_early(rig, "app", every)


def test_rotate_due_and_the_daemon_take_turns_without_doubling(
    daemon_rig: tuple[Rig, RunningDaemon],
) -> None:
    rig, daemon = daemon_rig
    every = timedelta(seconds=10)
    rig.add_policy("app", strategy="create_then_delete", grace="0s", every="10s")

    assert rig.run("rotate", "due").returncode == 0
    assert rig.run("rotate", "due").returncode == 0
    daemon.start()
    wait_until(lambda: rig.completed_rotations("app") >= 2, timeout=25)
    daemon.stop()
    assert rig.run("rotate", "due").returncode == 0
    time.sleep(1)
    assert rig.run("rotate", "due").returncode == 0

    assert rig.completed_rotations("app") >= 2
    assert_never_early(rig, "app", every)


def test_sighup_reloads_a_valid_configuration_and_keeps_the_old_on_error(
    daemon_rig: tuple[Rig, RunningDaemon],
) -> None:
    rig, daemon = daemon_rig
    rig.add_policy("first", strategy="create_then_delete", grace="0s")
    daemon.start()
    wait_until(lambda: rig.completed_rotations("first") == 1)
    assert daemon.process is not None

    good = rig.config_path.read_text()
    rig.config_path.write_text(good.replace("schedule:", "shedule:"))
    daemon.process.send_signal(signal.SIGHUP)
    time.sleep(1.5)
    assert daemon.healthy()

    rig.add_policy("second", strategy="create_then_delete", grace="0s")
    daemon.process.send_signal(signal.SIGHUP)
    wait_until(lambda: rig.completed_rotations("second") == 1, timeout=15)
    code, _ = daemon.stop()
    assert code == 0


def test_the_daemon_refuses_an_out_of_date_schema(
    rig_factory: RigFactory, tmp_path: object
) -> None:
    rig = rig_factory(VENDOR)
    rig.database_url = f"sqlite:///{tmp_path}/empty.db"
    rig.add_policy("app", strategy="create_then_delete")

    result = rig.run("daemon", timeout=30)

    assert result.returncode == 1
    assert "run 'rotator db upgrade'" in result.stderr
