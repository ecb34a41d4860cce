"""The daemon as it runs in production: a subprocess over PostgreSQL, OpenBao and an emulator."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from itertools import pairwise

import httpx
import pytest
from prometheus_client import REGISTRY

from rotator.audit.events import utcnow
from rotator.config.loader import load_config
from rotator.providers.registry import provider_class
from rotator.scheduler import SWEEP_SLACK, Daemon
from rotator.vocabulary import Outcome, Result
from tests.support.daemon import RunningDaemon, label_sets, samples_of, series, wait_until
from tests.support.rig import Rig
from tests.support.servers import PostgresServer, free_port
from tests.support.vault_proxy import VaultProxy
from tests.support.webhook import WebhookReceiver

RigFactory = Callable[[str], Rig]
VENDOR = "digitalocean_gradient"


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
    rig.add_policy("app", strategy="create_then_delete", grace="0s", every="1s")
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


def wait_until_due(rig: Rig, policy: str, every: timedelta) -> None:
    """Sleep until ``every`` has passed since ``policy``'s last completed rotation."""
    store = rig.store()
    last = max(r.completed_at for r in store.rotations_for(policy) if r.completed_at is not None)
    store.dispose()
    time.sleep(max(0.0, (last + every - utcnow()).total_seconds()) + 0.5)


def test_a_restart_neither_repeats_nor_skips_a_rotation(
    daemon_rig: tuple[Rig, RunningDaemon],
) -> None:
    rig, daemon = daemon_rig
    every = timedelta(seconds=5)
    rig.add_policy("app", strategy="create_then_delete", grace="0s", every="5s")
    daemon.start()
    wait_until(lambda: rig.completed_rotations("app") == 1)
    daemon.stop()

    daemon.start()
    time.sleep(1)
    daemon.stop()
    assert_never_early(rig, "app", every)

    wait_until_due(rig, "app", every)  # the policy falls due while no daemon runs
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
    every = timedelta(seconds=5)
    rig.add_policy("app", strategy="create_then_delete", grace="0s", every="5s")

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


BROKEN_CONFIGURATIONS = {
    "misspelt-key": lambda good: good.replace("schedule:", "shedule:"),
    "recursive-alias": lambda good: good + "recursive: &x [*x]\n",
}


@pytest.mark.parametrize("breakage", sorted(BROKEN_CONFIGURATIONS))
def test_sighup_reloads_a_valid_configuration_and_keeps_the_old_on_any_error(
    daemon_rig: tuple[Rig, RunningDaemon], breakage: str
) -> None:
    rig, daemon = daemon_rig
    rig.add_policy("first", strategy="create_then_delete", grace="0s")
    daemon.start()
    wait_until(lambda: rig.completed_rotations("first") == 1)

    good = rig.config_path.read_text()
    rig.config_path.write_text(BROKEN_CONFIGURATIONS[breakage](good))
    daemon.reload()
    wait_until(lambda: daemon.reloads("refused") == 1)
    assert daemon.healthy()

    rig.config_path.write_text(good)
    rig.add_policy("second", strategy="create_then_delete", grace="0s")
    daemon.reload()
    wait_until(lambda: rig.completed_rotations("second") == 1, timeout=15)
    code, _ = daemon.stop()
    assert code == 0
    refused = [e for e in daemon.log_events() if "reload refused" in str(e["event"])]
    assert len(refused) == 1


def test_the_daemon_refuses_an_out_of_date_schema(
    rig_factory: RigFactory, tmp_path: object
) -> None:
    rig = rig_factory(VENDOR)
    rig.database_url = f"sqlite:///{tmp_path}/empty.db"
    rig.add_policy("app", strategy="create_then_delete")

    result = rig.run_process("daemon", timeout=30)

    assert result.returncode == 1
    assert "run 'rotator db upgrade'" in result.stderr


# -- start-up ---------------------------------------------------------------------


def test_a_second_daemon_on_a_used_port_says_so_in_one_line_and_exits_2(
    daemon_rig: tuple[Rig, RunningDaemon],
) -> None:
    rig, daemon = daemon_rig
    rig.add_policy("app", strategy="create_then_delete")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", daemon.port))
        taken.listen()

        result = rig.run_process("daemon", timeout=30)

    assert result.returncode == 2
    # Warnings about the configuration come first; the failure itself is one line.
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    [line] = [line for line in lines if "configuration warning" not in line]
    assert f"127.0.0.1:{daemon.port}" in line
    assert "daemon.port" in line
    assert "Traceback" not in result.stderr


# -- /metrics ---------------------------------------------------------------------


def test_metrics_have_no_created_series(daemon_rig: tuple[Rig, RunningDaemon]) -> None:
    rig, daemon = daemon_rig
    rig.add_policy("app", strategy="create_then_delete", grace="0s")
    daemon.start()
    wait_until(lambda: rig.completed_rotations("app") == 1)

    text = daemon.get("/metrics").text

    assert "_created" not in text


def test_rotations_and_vendor_errors_are_labelled_with_the_provider_name_and_its_type(
    daemon_rig: tuple[Rig, RunningDaemon],
) -> None:
    rig, daemon = daemon_rig
    rig.add_policy("app", strategy="create_then_delete", grace="0s")
    rig.server.fail("POST", "api_keys$", status=400, times=1)
    daemon.start()
    wait_until(lambda: bool(series(daemon.metrics(), "rotator_rotations_total", outcome="failed")))

    samples = daemon.metrics()

    expected = {"provider": "sandbox", "provider_type": VENDOR}
    [rotation_labels] = label_sets(samples, "rotator_rotations_total")
    assert rotation_labels == {**expected, "policy": "app", "outcome": "failed"}
    [error_labels] = label_sets(samples, "rotator_vendor_call_errors_total")
    assert error_labels == {**expected, "status": "400"}
    assert all(
        {"provider", "provider_type"} <= set(labels)
        for labels in label_sets(samples, "rotator_rotation_duration_seconds_count")
    )


@pytest.fixture
def in_grace(daemon_rig: tuple[Rig, RunningDaemon]) -> tuple[Rig, RunningDaemon]:
    """A daemon whose only policy's first rotation waits in a one-hour grace period."""
    rig, daemon = daemon_rig
    rig.add_policy("app", strategy="create_then_delete", grace="1h")
    daemon.start()

    def waiting() -> bool:
        store = rig.store()
        active = store.active_rotation("app")
        store.dispose()
        return active is not None and active.state == "grace"

    wait_until(waiting)
    time.sleep(2)  # a few sweeps over the rotation waiting in grace
    return rig, daemon


def test_a_run_leaving_a_rotation_in_grace_is_not_counted_as_a_rotation(
    in_grace: tuple[Rig, RunningDaemon],
) -> None:
    _, daemon = in_grace

    assert series(daemon.metrics(), "rotator_rotations_total") == []


def test_a_policy_in_its_first_grace_period_has_a_key_age(
    in_grace: tuple[Rig, RunningDaemon],
) -> None:
    _, daemon = in_grace

    [age] = series(daemon.metrics(), "rotator_key_age_seconds", policy="app")

    assert 0 <= age < 30


def test_metrics_give_each_policy_its_last_success_and_next_due_time(
    daemon_rig: tuple[Rig, RunningDaemon],
) -> None:
    rig, daemon = daemon_rig
    rig.add_policy("app", strategy="create_then_delete", grace="0s", every="1h")
    daemon.start()
    wait_until(lambda: rig.completed_rotations("app") == 1)
    store = rig.store()
    [rotation] = store.rotations_for("app")
    store.dispose()
    assert rotation.completed_at is not None

    samples = daemon.metrics()

    [last] = series(samples, "rotator_last_success_timestamp_seconds", policy="app")
    [due] = series(samples, "rotator_next_due_timestamp_seconds", policy="app")
    assert last == pytest.approx(rotation.completed_at.timestamp(), abs=0.01)
    assert due == pytest.approx(rotation.completed_at.timestamp() + 3600, abs=0.01)


def test_metrics_still_answer_with_the_database_check_at_0_while_the_database_is_down(
    daemon_rig: tuple[Rig, RunningDaemon], postgres: PostgresServer
) -> None:
    rig, daemon = daemon_rig
    rig.add_policy("app", strategy="create_then_delete", grace="0s", every="1h")
    daemon.start()
    wait_until(lambda: rig.completed_rotations("app") == 1)
    database = rig.database_url.rsplit("/", 1)[1]

    postgres.refuse_connections(database)
    try:
        response = daemon.get("/metrics")
    finally:
        postgres.refuse_connections(database, refuse=False)

    assert response.status_code == 200
    samples = samples_of(response.text)
    assert series(samples, "rotator_ready", check="database") == [0.0]
    assert series(samples, "rotator_rotations_total", outcome="completed") == [1.0]


# -- reload -----------------------------------------------------------------------


def test_sighup_counts_nothing_twice(daemon_rig: tuple[Rig, RunningDaemon]) -> None:
    rig, daemon = daemon_rig
    rig.add_policy("app", strategy="create_then_delete", grace="0s")
    rig.server.fail("POST", "api_keys$", status=400, times=100)
    daemon.start()
    wait_until(lambda: bool(series(daemon.metrics(), "rotator_rotations_total", outcome="failed")))

    for reloaded in (1, 2, 3):
        daemon.reload()
        wait_until(lambda: daemon.reloads("applied") == reloaded)  # noqa: B023
    time.sleep(1.5)  # the jobs the reload rescheduled fire, and a sweep comes round

    store = rig.store()
    [rotation] = store.rotations_for("app")
    store.dispose()
    assert series(daemon.metrics(), "rotator_rotations_total", outcome="failed") == [
        rotation.attempts
    ]


def test_sighup_sends_notifications_to_the_new_webhook_url(
    daemon_rig: tuple[Rig, RunningDaemon],
) -> None:
    rig, daemon = daemon_rig
    old, new = WebhookReceiver(), WebhookReceiver()
    settings = daemon.daemon_settings()
    hooks = "notifications: {{webhooks: {{ops: {{url: {url}, events: [completed]}}}}}}\n"
    rig.extra_config = settings + hooks.format(url=old.url)
    rig.add_policy("first", strategy="create_then_delete", grace="0s")
    daemon.start()
    wait_until(lambda: len(old.received) == 1)

    rig.extra_config = settings + hooks.format(url=new.url)
    rig.add_policy("second", strategy="create_then_delete", grace="0s")
    daemon.reload()
    wait_until(lambda: rig.completed_rotations("second") == 1)
    time.sleep(0.5)
    old.stop()
    new.stop()

    assert [m["policy"] for m in old.received] == ["first"]
    assert [m["policy"] for m in new.received] == ["second"]


def test_sighup_uses_the_new_vault_address(daemon_rig: tuple[Rig, RunningDaemon]) -> None:
    rig, daemon = daemon_rig
    old, new = VaultProxy(rig.openbao.address), VaultProxy(rig.openbao.address)
    rig.vault_address = old.address
    rig.add_policy("first", strategy="create_then_delete", grace="0s")
    daemon.start()
    wait_until(lambda: rig.completed_rotations("first") == 1)

    rig.vault_address = new.address
    rig.add_policy("second", strategy="create_then_delete", grace="0s")
    old.stop()  # the old address no longer answers
    daemon.reload()
    wait_until(lambda: rig.completed_rotations("second") == 1, timeout=20)
    new.stop()

    assert any("second" in path for _, path in new.calls)


# -- scheduling -----------------------------------------------------------------------


def test_a_fire_skipped_while_the_previous_run_goes_on_is_logged_once_at_info(
    daemon_rig: tuple[Rig, RunningDaemon],
) -> None:
    rig, daemon = daemon_rig
    rig.add_policy("slow", strategy="create_then_delete", grace="0s", every="1h")
    hold = rig.server.hold("POST", "api_keys$", after=False, resume=True)
    daemon.start()
    hold.wait_arrived()
    time.sleep(2)  # sweeps every second find the run still going, twice or more
    hold.release()
    wait_until(lambda: rig.completed_rotations("slow") >= 1)
    daemon.stop()

    skipped = [e for e in daemon.log_events() if e.get("policy") == "slow" and "skip" in str(e)]
    assert len(skipped) == 1
    assert skipped[0]["level"] == "info"


# -- the HTTP endpoint ------------------------------------------------------------------


def half_sent_requests(port: int, count: int) -> list[socket.socket]:
    """``count`` connections, each with a request started and never finished."""
    hanging = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        hanging.append(sock)
    return hanging


def test_connections_beyond_max_connections_wait_until_the_timeout_frees_one(
    daemon_rig: tuple[Rig, RunningDaemon],
) -> None:
    rig, daemon = daemon_rig
    rig.extra_config = daemon.daemon_settings(extra=", max_connections: 3", request_timeout="1s")
    rig.add_policy("app", strategy="create_then_delete")
    daemon.start()
    url = f"http://127.0.0.1:{daemon.port}/healthz"
    hanging = half_sent_requests(daemon.port, 3)
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(url, timeout=0.5)

        answer = httpx.get(url, timeout=10)  # request_timeout (1s) closes the idle three
    finally:
        for sock in hanging:
            sock.close()

    assert answer.status_code == 200


def test_healthz_answers_within_a_second_while_400_requests_hang_half_sent(
    daemon_rig: tuple[Rig, RunningDaemon],
) -> None:
    rig, daemon = daemon_rig
    rig.add_policy("app", strategy="create_then_delete")
    daemon.start()
    hanging = half_sent_requests(daemon.port, 400)
    try:
        started = time.monotonic()
        response = httpx.get(f"http://127.0.0.1:{daemon.port}/healthz", timeout=1)
        took = time.monotonic() - started
    finally:
        for sock in hanging:
            sock.close()

    assert response.status_code == 200
    assert took < 1


def test_a_connection_that_stops_half_way_is_closed_after_the_request_timeout(
    daemon_rig: tuple[Rig, RunningDaemon],
) -> None:
    rig, daemon = daemon_rig
    rig.extra_config = daemon.daemon_settings(request_timeout="1s")
    rig.add_policy("app", strategy="create_then_delete")
    daemon.start()
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()

        answer = sock.recv(1024)  # b"" once the server closes it

        assert time.monotonic() - started < 5  # request_timeout: 1s, checked every second
    assert b"200" not in answer


def test_an_oversized_request_is_refused(daemon_rig: tuple[Rig, RunningDaemon]) -> None:
    rig, daemon = daemon_rig
    rig.add_policy("app", strategy="create_then_delete")
    daemon.start()

    response = daemon.get_with_headers("/healthz", {"X-Padding": "x" * 40_000})

    assert response.status_code == 431


def test_without_a_host_setting_the_daemon_listens_on_loopback_only(
    daemon_rig: tuple[Rig, RunningDaemon],
) -> None:
    rig, daemon = daemon_rig
    rig.extra_config = daemon.daemon_settings(host=None)
    rig.add_policy("app", strategy="create_then_delete")
    daemon.start()

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.2:{daemon.port}/healthz", timeout=2)


class SkippingClock:
    """The real time, plus whatever a test has skipped ahead instead of waiting."""

    def __init__(self) -> None:
        self.ahead = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.ahead

    def skip(self, by: timedelta) -> None:
        self.ahead += by


@pytest.fixture
def clock() -> SkippingClock:
    return SkippingClock()


@pytest.fixture
def in_process(
    rig_factory: RigFactory, monkeypatch: pytest.MonkeyPatch, clock: SkippingClock
) -> Iterator[tuple[Daemon, str]]:
    """A daemon started in this process (tick 1s, on ``clock``), and the URL of its /healthz."""
    rig = rig_factory(VENDOR)
    port = free_port()
    rig.extra_config = f"daemon: {{port: {port}, host: 127.0.0.1, tick: 1s}}\n"
    rig.add_policy("app", strategy="create_then_delete")
    for name, value in rig.env.items():
        monkeypatch.setenv(name, value)
    daemon = Daemon(rig.config_path, load_config(rig.config_path, provider_class), clock=clock)
    daemon.start()
    healthz = f"http://127.0.0.1:{port}/healthz"
    assert httpx.get(healthz).status_code == 200
    yield daemon, healthz
    daemon.shutdown()


def test_a_policy_not_due_within_the_next_ticks_holds_no_scheduler_job(
    rig_factory: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 10,000 policies rotated monthly would otherwise hold 10,000 jobs for weeks (6 MB); the
    # sweep, every tick, schedules each one's job before it falls due.
    rig = rig_factory(VENDOR)
    rig.extra_config = f"daemon: {{port: {free_port()}, host: 127.0.0.1, tick: 1s}}\n"
    spec = rig.add_policy("idle", strategy="create_then_delete", every="30d")
    store = rig.store()
    store.set_policy_state("idle", current_key_id=spec.slot.key_id, adopted_at=utcnow())
    store.dispose()
    for name, value in rig.env.items():
        monkeypatch.setenv(name, value)
    daemon = Daemon(rig.config_path, load_config(rig.config_path, provider_class))
    daemon.start()
    try:
        jobs = [job.id for job in daemon.scheduler.get_jobs()]
    finally:
        daemon.shutdown()
    assert jobs == ["sweep"]


def test_healthz_turns_503_when_the_scheduler_stops(in_process: tuple[Daemon, str]) -> None:
    daemon, healthz = in_process

    daemon.scheduler.shutdown(wait=False)

    answer = httpx.get(healthz)
    assert answer.status_code == 503
    assert "scheduler is not running" in answer.json()["reason"]


def test_healthz_turns_503_when_the_sweep_stops_coming_round(
    in_process: tuple[Daemon, str], clock: SkippingClock
) -> None:
    daemon, healthz = in_process

    daemon.scheduler.pause()  # the scheduler object stays up; nothing fires any more

    three_ticks_and_the_slack = 3 * timedelta(seconds=1) + SWEEP_SLACK

    def overdue() -> bool:
        # Skipped again on each look: a sweep that fired just before the pause counts once.
        clock.skip(three_ticks_and_the_slack + timedelta(seconds=1))
        return httpx.get(healthz).status_code == 503

    wait_until(overdue, timeout=5)
    assert "sweep has not run" in httpx.get(healthz).json()["reason"]


def reloads(outcome: str) -> float:
    return REGISTRY.get_sample_value("rotator_config_reloads_total", {"outcome": outcome}) or 0.0


def test_reloads_are_counted_applied_or_refused(in_process: tuple[Daemon, str]) -> None:
    daemon, _ = in_process
    applied, refused = reloads("applied"), reloads("refused")
    good = daemon.config_path.read_text()

    daemon.config_path.write_text(good.replace("schedule:", "shedule:"))
    daemon.reload()
    daemon.config_path.write_text(good)
    daemon.reload()

    assert reloads("refused") == refused + 1
    assert reloads("applied") == applied + 1


def test_a_reload_lets_a_running_rotation_finish_with_the_clients_it_started_with(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory(VENDOR)
    rig.add_policy("app", strategy="create_then_delete", grace="0s")
    hold = rig.server.hold("POST", "api_keys$", after=True, resume=True)
    engine = rig.engine()
    outcomes: list[Outcome] = []
    running = threading.Thread(target=lambda: outcomes.append(engine.rotate_now("app")))
    running.start()
    try:
        hold.wait_arrived()  # the key is made; verify and revoke are still to come

        engine.reconfigure(load_config(rig.config_path, provider_class))
    finally:
        hold.release()
        running.join(timeout=60)
        engine.close()

    [outcome] = outcomes
    assert outcome.result is Result.COMPLETED, outcome.message
