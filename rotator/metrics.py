"""Prometheus metrics (prometheus-client), served by the daemon at ``/metrics``.

Counters and the duration histogram are updated as rotations run, through the
``PrometheusRecorder`` the daemon installs (``rotator.recorder``: a one-shot command
records nothing and does not import this module); the
per-policy gauges are read from the audit database at scrape time (by
``rotator.observe``), so they are right whichever process did the rotating.

Label vocabulary, the same on every series: ``policy`` (a policy name),
``provider`` (the configured provider NAME, i.e. the account, ``do-prod``) and
``provider_type`` (the vendor, ``digitalocean_gradient``). The dashboard and
the alert rules in ``deploy/`` use exactly the names defined here; a test
checks them against a running daemon.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# ``*_created`` series double the series count and no dashboard or alert reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

ROTATIONS = Counter(
    "rotator_rotations_total",
    "Rotation attempts by how they ended: completed, failed (retried later), rolled_back, "
    "needs_attention. A run that leaves a rotation waiting in grace is not one: the rotation "
    "is counted when it completes.",
    ["policy", "provider", "provider_type", "outcome"],
)
ROTATION_DURATION = Histogram(
    "rotator_rotation_duration_seconds",
    "Wall time of one rotation run (one policy, until done, waiting in grace or failed).",
    ["provider", "provider_type"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
VENDOR_ERRORS = Counter(
    "rotator_vendor_call_errors_total",
    "Failed vendor API calls by provider and HTTP status ('network' when none).",
    ["provider", "provider_type", "status"],
)

CONFIG_RELOADS = Counter(
    "rotator_config_reloads_total",
    "Configuration reloads (SIGHUP) by outcome: applied, or refused (the running one kept).",
    ["outcome"],
)
for _outcome in ("applied", "refused"):
    CONFIG_RELOADS.labels(_outcome)  # both series exist from the start, at 0


class PrometheusRecorder:
    """Records into the series above (``rotator.recorder.Recorder``)."""

    def rotation_timed(self, provider: str, provider_type: str, seconds: float) -> None:
        ROTATION_DURATION.labels(provider, provider_type).observe(seconds)

    def rotation_ended(self, policy: str, provider: str, provider_type: str, outcome: str) -> None:
        ROTATIONS.labels(policy, provider, provider_type, outcome).inc()

    def vendor_error(self, provider: str, provider_type: str, status: str) -> None:
        VENDOR_ERRORS.labels(provider, provider_type, status).inc()


@dataclass(frozen=True, slots=True)
class PolicyReading:
    """What the gauges say about one configured policy, as of one scrape."""

    policy: str
    #: Since when the key in Vault is current (None: not known, never rotated nor adopted).
    key_since: datetime | None
    last_success: datetime | None
    next_due: datetime
    interval_seconds: float
    #: How long after its due time a rotation may still start (0: no window).
    window_seconds: float
    #: When the old key of a rotation waiting in grace is to be revoked.
    grace_until: datetime | None
    needs_attention: bool
    #: Grace is extended because consumers still use the old key (``revoke_when_unused``).
    old_key_in_use: bool = False


@dataclass(frozen=True)
class Reading:
    """Everything the scrape-time gauges report."""

    policies: list[PolicyReading]
    ready: dict[str, bool]
    #: None when the audit database could not be read.
    unsealed_events: int | None
    oldest_unsealed: datetime | None


#: A reading with no samples, whose families ``describe`` lists (all of them: the database
#: counts as read).
_NOTHING_READ = Reading(policies=[], ready={}, unsealed_events=0, oldest_unsealed=None)


class StateCollector(Collector):
    """Gauges computed when Prometheus scrapes, from ``read()`` at that moment."""

    def __init__(self, read: Callable[[], Reading], clock: Callable[[], datetime]) -> None:
        self._read = read
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return self._families(self._read(), self._clock())

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families without their samples: registering then reads nothing (else
        prometheus-client runs a whole scrape, every policy's state, to learn the names)."""
        return self._families(_NOTHING_READ, self._clock())

    def _families(self, reading: Reading, now: datetime) -> Iterator[GaugeMetricFamily]:
        ready = GaugeMetricFamily(
            "rotator_ready", "1 when the daemon's readiness check passes.", labels=["check"]
        )
        for check, ok in sorted(reading.ready.items()):
            ready.add_metric([check], float(ok))
        yield ready
        if reading.unsealed_events is None:
            return
        # One family's samples at a time: prometheus-client writes a family out before it
        # asks for the next, so a scrape never holds every policy's samples of every family.
        for name, doc, value in _PER_POLICY:
            family = GaugeMetricFamily(name, doc, labels=["policy"])
            for p in reading.policies:
                sample = value(p, now)
                if sample is not None:
                    family.add_metric([p.policy], sample)
            yield family
        total = GaugeMetricFamily(
            "rotator_rotations_needing_attention", "Policies stopped until someone acts."
        )
        total.add_metric([], sum(p.needs_attention for p in reading.policies))
        unsealed = GaugeMetricFamily(
            "rotator_audit_unsealed_events", "Audit events not yet sealed into the hash chain."
        )
        unsealed.add_metric([], reading.unsealed_events)
        lag = GaugeMetricFamily(
            "rotator_audit_seal_lag_seconds",
            "Age of the oldest audit event not yet sealed (0 when all are sealed).",
        )
        oldest = reading.oldest_unsealed
        lag.add_metric([], max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)
        yield from (total, unsealed, lag)


def _seconds_between(later: datetime, earlier: datetime | None) -> float | None:
    return None if earlier is None else (later - earlier).total_seconds()


def _timestamp(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


#: The per-policy gauges: name, help, and the value for a policy as of a scrape (None: no
#: sample for that policy).
_PER_POLICY: tuple[tuple[str, str, Callable[[PolicyReading, datetime], float | None]], ...] = (
    (
        "rotator_key_age_seconds",
        "Age of the policy's current key in Vault.",
        lambda p, now: (
            None if p.key_since is None else max((now - p.key_since).total_seconds(), 0.0)
        ),
    ),
    (
        "rotator_seconds_since_last_success",
        "Seconds since the last completed rotation.",
        lambda p, now: _seconds_between(now, p.last_success),
    ),
    (
        "rotator_last_success_timestamp_seconds",
        "Unix time of the policy's last completed rotation.",
        lambda p, now: _timestamp(p.last_success),
    ),
    (
        "rotator_next_due_timestamp_seconds",
        "Unix time the policy is (or was, if overdue) next due; now for one due at once.",
        lambda p, now: p.next_due.timestamp(),
    ),
    (
        "rotator_rotation_interval_seconds",
        "The policy's schedule interval ('every', or the time between two cron fires).",
        lambda p, now: p.interval_seconds,
    ),
    (
        "rotator_schedule_window_seconds",
        "How long after its due time a rotation may start (0: no window).",
        lambda p, now: p.window_seconds,
    ),
    (
        "rotator_grace_until_timestamp_seconds",
        "Unix time the old key of a rotation waiting in grace is to be revoked.",
        lambda p, now: _timestamp(p.grace_until),
    ),
    (
        "rotator_policy_needs_attention",
        "1 while the policy is stopped until someone acts (see 'rotator status').",
        lambda p, now: float(p.needs_attention),
    ),
    (
        "rotator_old_key_in_use",
        "1 while grace is extended because consumers still use the old key.",
        lambda p, now: float(p.old_key_in_use),
    ),
)


class PausedCollector(Collector):
    """``rotator_policy_paused{policy}``: 1 while a policy is held (paused or disabled), else 0.

    ``read_holds`` returns every configured policy with whether it is held now.
    """

    def __init__(self, read_holds: Callable[[], dict[str, bool]]) -> None:
        self._read_holds = read_holds

    def collect(self) -> Iterator[GaugeMetricFamily]:
        paused = self._family()
        for policy, is_held in sorted(self._read_holds().items()):
            paused.add_metric([policy], float(is_held))
        yield paused

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The family without samples: registering reads no policy's hold."""
        yield self._family()

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "rotator_policy_paused",
            "1 while the policy is paused by an operator or has enabled: false.",
            labels=["policy"],
        )
