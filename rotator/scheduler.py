"""``rotator daemon``: APScheduler drives the engine; probes and metrics over HTTP.

One job per policy (its cron or interval trigger, ``max_instances=1``,
coalescing, a misfire grace time) asks the engine to rotate it if due; the
database, not this process, decides what is due, so a restart, or a CronJob
running between two daemon runs, neither skips nor repeats a rotation. A
policy has its job only while its next fire is at most two ticks away: the
periodic sweep schedules the others' jobs, at their exact time, before they
fall due, so a large fleet of idle policies holds no job each. The sweep also
advances rotations waiting in grace, retries failed ones when their backoff has
passed, and wakes policies that became due while no job was about to fire. A
bounded thread pool rotates several policies at once.

A fire that finds the policy's previous run still going is skipped (one
run per policy at a time); that is logged once per policy and busy spell, at
INFO, with the policy's name.

SIGHUP reloads the configuration: every error in the new one (not only a
validation error) keeps the running one; on success everything derived from
it (providers, the Vault client, webhooks, jobs) is rebuilt. SIGTERM/SIGINT stop
new work, let running rotations finish within ``daemon.shutdown_timeout`` and
exit 0; whatever is cut off resumes from the database on the next start.

The HTTP endpoint (``rotator.endpoint``) reports the daemon alive while its
scheduler runs and its sweep keeps coming round; otherwise ``/healthz`` turns
503 so that the kubelet restarts the pod.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import REGISTRY

from rotator import observe
from rotator.audit import migrations
from rotator.audit.events import utcnow
from rotator.audit.records import SCHEMA_REVISION, PolicyState
from rotator.config.loader import Config, Policy, load_config
from rotator.endpoint import Endpoint
from rotator.engine.engine import Engine
from rotator.engine.schedule import due_window, next_fire
from rotator.errors import AuditStoreError
from rotator.log import get_logger
from rotator.memory import release_freed_memory
from rotator.metrics import CONFIG_RELOADS, PausedCollector, PrometheusRecorder, StateCollector
from rotator.providers.registry import provider_class
from rotator.recorder import install
from rotator.secret import scrub
from rotator.vocabulary import State

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


class _SkippedFireFilter(logging.Filter):
    """Drops APScheduler's skipped-run warning for policy jobs: the daemon logs its own, once."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ('job "rotate ' in message and "maximum number of running instances" in message)


_SKIPPED_FIRE_FILTER = _SkippedFireFilter()

#: The sweep may be late by this much beyond a few ticks before the daemon counts as stuck.
SWEEP_SLACK = timedelta(seconds=10)


class Daemon:
    def __init__(
        self, config_path: Path, config: Config, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        """``clock`` is the daemon's and its engine's now (a test runs it ahead instead of
        waiting); APScheduler fires the jobs by the real clock, and shutdown waits in real time.
        """
        self.config_path = config_path
        self._clock = clock
        settings = config.daemon
        # Bound first: a used port is reported before the database is touched.
        self._http = Endpoint(
            settings, alive=self.liveness, ready=self.readiness, registry=REGISTRY
        )
        # The daemon is the process that serves metrics: its rotations are recorded.
        install(PrometheusRecorder())
        self.engine = Engine.open(config, clock=clock)
        self._stopping = threading.Event()
        self._reload = threading.Event()
        self._running = 0
        self._idle = threading.Condition()
        self._loop_failure: str | None = None
        self._last_sweep = self._clock()
        # The sweep's period as started: a reload changes it only on restart.
        self._tick = settings.tick
        # A policy whose next fire is further away than this has no job; the sweep, which
        # comes round every tick, makes it in time (one tick late still leaves one to spare).
        self._horizon = 2 * settings.tick
        # Policies whose run is going on and whose skipped fire was already logged.
        self._skip_logged: set[str] = set()
        # When each policy is next due, as last read from the database. It can only be early
        # (a rotation elsewhere moves the time later), and an early wake-up costs one
        # "not due" check, so the sweep need not read every policy's state each tick.
        self._due: dict[str, datetime] = {}
        self.scheduler = BackgroundScheduler(
            executors={
                "default": ThreadPoolExecutor(settings.concurrency),
                # Its own thread: busy rotations never hold the sweep (and liveness) back.
                "sweep": ThreadPoolExecutor(1),
            },
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": int(settings.misfire_grace.total_seconds()),
            },
            timezone=UTC,
        )
        self.scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES)
        # One filter object: adding it again (a daemon per test, say) adds nothing.
        logging.getLogger("apscheduler.scheduler").addFilter(_SKIPPED_FIRE_FILTER)
        self._collector = StateCollector(
            lambda: observe.read(self.engine, self.readiness, clock()),
            clock,
        )
        REGISTRY.register(self._collector)
        self._paused_collector = PausedCollector(self._held_policies)
        REGISTRY.register(self._paused_collector)

    @property
    def port(self) -> int:
        return self._http.port

    # -- jobs -----------------------------------------------------------------

    def _schedule_policies(self, config: Config, states: dict[str, PolicyState]) -> None:
        now = self._clock()
        for job in self.scheduler.get_jobs():
            name = job.id.removeprefix("policy:")
            if name != job.id and name not in config.policies:
                job.remove()
        self._due = {}
        for name, policy in config.policies.items():
            start = due_window(name, policy.schedule, states.get(name), now).start
            self._due[name] = start
            self._fire_at(name, policy, max(start, now), now)

    def _fire_at(self, name: str, policy: Policy, when: datetime | None, now: datetime) -> None:
        """Fire the policy's job at ``when``; far off (or None: held), it has no job for now."""
        job_id = f"policy:{name}"
        if when is None or when > now + self._horizon:
            with contextlib.suppress(JobLookupError):
                self.scheduler.remove_job(job_id)
            return
        self.scheduler.add_job(
            self._rotate,
            _trigger(policy),
            args=(name,),
            id=job_id,
            name=f"rotate {name}",
            replace_existing=True,
            next_run_time=when,
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
                self._skip_logged.discard(name)
                self._idle.notify_all()

    def _on_skipped(self, event: JobSubmissionEvent) -> None:
        name = event.job_id.removeprefix("policy:")
        if name == event.job_id:
            return
        with self._idle:
            if name in self._skip_logged:
                return
            self._skip_logged.add(name)
        log.info(
            "policy run skipped: its previous run is still going; it is picked up when that ends",
            policy=name,
        )

    def _reschedule(self, name: str) -> None:
        """Point the policy's job at its next due time, as the database now says."""
        policy = self.engine.config.policies.get(name)
        if policy is None or self._stopping.is_set():
            return
        now = self._clock()
        active = self.engine.store.active_rotation(name)
        if active is None and self.engine.hold(name) is not None:
            # Held: no wake-up of its own; the sweep wakes it once the hold ends.
            self._fire_at(name, policy, None, now)
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
        self._fire_at(name, policy, wake, now)

    def _sweep(self) -> None:
        """Wake every policy with work to do now (grace over, retry time come, or due), and
        give those with work within the horizon a job firing on time."""
        self._last_sweep = self._clock()
        if self._stopping.is_set():
            return
        # Events left unsealed by a failed pass or a crashed process get sealed here at the latest.
        self.engine.store.seal_soon()
        now = self._clock()
        soon = now + self._horizon
        fire: dict[str, datetime] = {}
        in_flight: set[str] = set()
        for rotation in self.engine.store.unfinished_rotations():
            in_flight.add(rotation.policy)
            if rotation.needs_attention:
                continue
            when = (
                rotation.grace_until if rotation.state == State.GRACE else rotation.next_attempt_at
            )
            if when is None or when <= soon:
                fire[rotation.policy] = max(when or now, now)
        # A policy with a rotation in flight is woken by that rotation's own times above;
        # a held one (paused, enabled: false) not at all for being due.
        waiting = in_flight | self.engine.holds().keys()
        fire.update(
            (n, max(due, now)) for n, due in self._due.items() if due <= soon and n not in waiting
        )
        policies = self.engine.config.policies
        for name, when in fire.items():
            policy = policies.get(name)
            if policy is None:
                continue
            job = self.scheduler.get_job(f"policy:{name}")
            if job is None:
                self._fire_at(name, policy, when, now)
            elif job.next_run_time is None or job.next_run_time > when:
                # Its run may just have ended and found the next fire far off.
                with contextlib.suppress(JobLookupError):
                    job.modify(next_run_time=when)

    def _held_policies(self) -> dict[str, bool]:
        try:
            holds = self.engine.holds()
        except AuditStoreError:
            # The database is down: /metrics still answers; readiness reports the cause.
            return {}
        return {name: name in holds for name in self.engine.config.policies}

    # -- lifecycle ------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self._stopping.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
        self.start()
        try:
            while not self._stopping.wait(0.5):
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
        except BaseException as exc:
            # Running rotations may keep the process up a while: liveness must not say ok.
            self._loop_failure = f"main loop stopped: {type(exc).__name__}: {scrub(str(exc))}"
            raise
        return self.shutdown()

    def start(self) -> None:
        """Serve HTTP, schedule every policy and the sweep, and start the scheduler."""
        self._http.start()
        self._schedule_policies(self.engine.config, self.engine.store.all_policy_states())
        # The configuration's parse and the state read left only garbage: return it.
        release_freed_memory()
        self.scheduler.add_job(
            self._sweep,
            "interval",
            seconds=self._tick.total_seconds(),
            id="sweep",
            name="sweep",
            executor="sweep",
        )
        self._last_sweep = self._clock()
        self.scheduler.start()
        log.info(
            "daemon started",
            policies=len(self.engine.config.policies),
            host=self.engine.config.daemon.host,
            port=self.port,
            concurrency=self.engine.config.daemon.concurrency,
        )

    def reload(self) -> None:
        """Switch to the configuration file as it is now, or keep the running one on any error."""
        try:
            self._reload_config()
        finally:
            # Accepted or refused, the load's temporaries (and any replaced config) are garbage.
            release_freed_memory()

    def _reload_config(self) -> None:
        try:
            config = load_config(self.config_path, provider_class)
            states = self.engine.store.all_policy_states()
        except Exception as exc:
            log.error(
                "configuration reload refused; keeping the running one",
                error=scrub(f"{type(exc).__name__}: {exc}"),
            )
            CONFIG_RELOADS.labels("refused").inc()
            return
        self._warn_restart_only(config)
        self.engine.reconfigure(config)
        self._schedule_policies(config, states)
        log.info("configuration reloaded", policies=len(config.policies))
        CONFIG_RELOADS.labels("applied").inc()

    def _warn_restart_only(self, new: Config) -> None:
        old = self.engine.config
        changed = [
            key
            for key, before, after in (
                ("database.url", old.database_url.reveal(), new.database_url.reveal()),
                ("daemon.host", old.daemon.host, new.daemon.host),
                ("daemon.port", old.daemon.port, new.daemon.port),
                ("daemon.concurrency", old.daemon.concurrency, new.daemon.concurrency),
                ("daemon.tick", old.daemon.tick, new.daemon.tick),
            )
            if before != after
        ]
        if changed:
            log.warning("changed settings take effect on restart only", settings=changed)

    def shutdown(self) -> int:
        timeout = self.engine.config.daemon.shutdown_timeout.total_seconds()
        log.info("stopping: no new work; waiting for running rotations", timeout_s=timeout)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._running and time.monotonic() < deadline:
                self._idle.wait(0.2)
            unfinished = self._running
        self._http.close()
        REGISTRY.unregister(self._collector)
        REGISTRY.unregister(self._paused_collector)
        if unfinished:
            log.warning(
                "stopped with rotations still running; they resume on next start",
                running=unfinished,
            )
            os._exit(0)
        self.engine.close()
        log.info("stopped")
        return 0

    # -- probes -------------------------------------------------------------------

    def liveness(self) -> str | None:
        """None while the daemon does its work; else why it does not (``/healthz`` 503)."""
        if self._loop_failure is not None:
            return self._loop_failure
        if not self.scheduler.running:
            return "the scheduler is not running"
        late = self._clock() - self._last_sweep
        if late > 3 * self._tick + SWEEP_SLACK:
            return f"the sweep has not run for {int(late.total_seconds())}s"
        return None

    def readiness(self) -> dict[str, bool]:
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
