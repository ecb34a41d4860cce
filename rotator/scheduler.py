"""``rotator daemon``: APScheduler drives the engine; probes and metrics over HTTP.

One job per policy (its cron or interval trigger, ``max_instances=1``,
coalescing, a misfire grace time) asks the engine to rotate it if due; the
database, not this process, decides what is due, so a restart, or a CronJob
running between two daemon runs, neither skips nor repeats a rotation. A
periodic sweep advances rotations waiting in grace, retries failed ones when
their backoff has passed, and wakes policies that became due while no job was
about to fire. A bounded thread pool rotates several policies at once.

SIGHUP reloads the configuration (checked first; on error the old one stays).
SIGTERM/SIGINT stop new work, let running rotations finish within
``daemon.shutdown_timeout`` and exit 0; whatever is cut off resumes from the
database on the next start.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from rotator.audit import migrations
from rotator.audit.records import SCHEMA_REVISION
from rotator.config.loader import Config, Policy, load_config
from rotator.engine.engine import Engine
from rotator.engine.schedule import due_window, next_fire
from rotator.engine.states import State
from rotator.errors import ConfigError
from rotator.log import get_logger
from rotator.metrics import PausedCollector, StateCollector

log = get_logger("rotator.daemon")


class CronTrigger(BaseTrigger):  # type: ignore[misc]
    """A standard 5-field cron trigger (croniter semantics: Sunday is 0, as in crontab)."""

    def __init__(self, policy: Policy) -> None:
        self._schedule = policy.schedule

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        return next_fire(self._schedule, max(previous_fire_time or now, now))


def _trigger(policy: Policy) -> BaseTrigger:
    if policy.schedule.every is not None:
        return IntervalTrigger(seconds=policy.schedule.every.total_seconds(), timezone=UTC)
    return CronTrigger(policy)


class Daemon:
    def __init__(self, config_path: Path, config: Config) -> None:
        self.config_path = config_path
        self.engine = Engine.open(config)
        settings = config.daemon
        self._stopping = threading.Event()
        self._reload = threading.Event()
        self._running = 0
        self._idle = threading.Condition()
        # When each policy is next due, as last read from the database. It can only be early
        # (a rotation elsewhere moves the time later), and an early wake-up costs one
        # "not due" check, so the sweep need not read every policy's state each tick.
        self._due: dict[str, datetime] = {}
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(settings.concurrency)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": int(settings.misfire_grace.total_seconds()),
            },
            timezone=UTC,
        )
        self._http = ThreadingHTTPServer((settings.host, settings.port), self._handler())
        self._http.daemon_threads = True
        REGISTRY.register(StateCollector(self.engine.store.policy_overview))
        REGISTRY.register(PausedCollector(self._held_policies))

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    # -- jobs -----------------------------------------------------------------

    def _schedule_policies(self) -> None:
        now = datetime.now(UTC)
        states = self.engine.store.all_policy_states()
        wanted = {f"policy:{name}" for name in self.engine.config.policies}
        for job in self.scheduler.get_jobs():
            if job.id.startswith("policy:") and job.id not in wanted:
                job.remove()
        self._due = {}
        for name, policy in self.engine.config.policies.items():
            start = due_window(name, policy.schedule, states.get(name), now).start
            self._due[name] = start
            self.scheduler.add_job(
                self._rotate,
                _trigger(policy),
                args=[name],
                id=f"policy:{name}",
                name=f"rotate {name}",
                replace_existing=True,
                next_run_time=max(start, now),
            )

    def _rotate(self, name: str) -> None:
        if self._stopping.is_set():
            return
        with self._idle:
            self._running += 1
        try:
            outcome = self.engine.rotate_if_due(name)
            log.info("policy run", policy=name, result=outcome.result.value, detail=outcome.message)
            self._reschedule(name)
        except Exception as exc:
            log.error("policy run failed", policy=name, error=f"{type(exc).__name__}: {exc}")
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def _reschedule(self, name: str) -> None:
        """Point the policy's job at its next due time, as the database now says."""
        policy = self.engine.config.policies.get(name)
        job = self.scheduler.get_job(f"policy:{name}")
        if policy is None or job is None or self._stopping.is_set():
            return
        now = datetime.now(UTC)
        active = self.engine.store.active_rotation(name)
        if active is None and self.engine.hold(name) is not None:
            # Held: no wake-up of its own; the sweep wakes it once the hold ends.
            job.modify(next_run_time=None)
            return
        if active is not None and not active.needs_attention:
            when = active.grace_until if active.state == State.GRACE else active.next_attempt_at
            wake = max(when or now, now)
        else:
            state = self.engine.store.policy_state(name)
            due = due_window(name, policy.schedule, state, now)
            wake = max(due.start, now)
            if not due.contains(now):
                self._due[name] = due.start
        job.modify(next_run_time=wake)

    def _sweep(self) -> None:
        """Wake every policy with work to do now: grace over, retry time come, or due."""
        if self._stopping.is_set():
            return
        # Events left unsealed by a failed pass or a crashed process get sealed here at the latest.
        self.engine.store.seal_soon()
        now = datetime.now(UTC)
        wake: set[str] = set()
        in_flight: set[str] = set()
        for rotation in self.engine.store.unfinished_rotations():
            in_flight.add(rotation.policy)
            if rotation.needs_attention:
                continue
            when = (
                rotation.grace_until if rotation.state == State.GRACE else rotation.next_attempt_at
            )
            if when is None or when <= now:
                wake.add(rotation.policy)
        # A policy with a rotation in flight is woken by that rotation's own times above;
        # a held one (paused, enabled: false) not at all for being due.
        waiting = in_flight | self.engine.holds().keys()
        wake.update(n for n, due in self._due.items() if due <= now and n not in waiting)
        for name in wake & self.engine.config.policies.keys():
            job = self.scheduler.get_job(f"policy:{name}")
            if job is not None and (job.next_run_time is None or job.next_run_time > now):
                job.modify(next_run_time=now)

    def _held_policies(self) -> dict[str, bool]:
        holds = self.engine.holds()
        return {name: name in holds for name in self.engine.config.policies}

    # -- lifecycle ------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self._stopping.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self._schedule_policies()
        tick = self.engine.config.daemon.tick.total_seconds()
        self.scheduler.add_job(self._sweep, "interval", seconds=tick, id="sweep", name="sweep")
        self.scheduler.start()
        log.info(
            "daemon started",
            policies=len(self.engine.config.policies),
            port=self.port,
            concurrency=self.engine.config.daemon.concurrency,
        )
        while not self._stopping.wait(0.5):
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
        return self.shutdown()

    def reload(self) -> None:
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log.error("configuration reload refused; keeping the running one", error=str(exc))
            return
        self.engine.config = config
        self.engine.reset_providers()
        self._schedule_policies()
        log.info("configuration reloaded", policies=len(config.policies))

    def shutdown(self) -> int:
        timeout = self.engine.config.daemon.shutdown_timeout.total_seconds()
        log.info("stopping: no new work; waiting for running rotations", timeout_s=timeout)
        self.scheduler.shutdown(wait=False)
        deadline = datetime.now(UTC) + timedelta(seconds=timeout)
        with self._idle:
            while self._running and datetime.now(UTC) < deadline:
                self._idle.wait(0.2)
            unfinished = self._running
        self._http.shutdown()
        if unfinished:
            log.warning(
                "stopped with rotations still running; they resume on next start",
                running=unfinished,
            )
            os._exit(0)
        self.engine.close()
        log.info("stopped")
        return 0

    # -- probes and metrics -----------------------------------------------------

    def readiness(self) -> dict[str, Any]:
        checks = {
            "database": self.engine.store.is_reachable(),
            "vault": self.engine.vault.is_reachable(),
        }
        try:
            checks["schema"] = (
                migrations.current_revision(self.engine.store.engine) == SCHEMA_REVISION
            )
        except Exception:
            checks["schema"] = False
        return checks

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        daemon = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._send(200, b"ok\n", "text/plain")
                elif self.path == "/readyz":
                    checks = daemon.readiness()
                    status = 200 if all(checks.values()) else 503
                    self._send(status, json.dumps(checks).encode(), "application/json")
                elif self.path == "/metrics":
                    self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Probes every few seconds would drown the log."""

        return Handler
