"""Prometheus metrics (prometheus-client), served by the daemon at ``/metrics``.

Counters and the duration histogram are updated as rotations run; the
per-policy gauges are read from the audit database at scrape time, so they
are right whichever process did the rotating.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

ROTATIONS = Counter(
    "rotator_rotations_total",
    "Rotation runs by policy, provider and outcome.",
    ["policy", "provider", "outcome"],
)
ROTATION_DURATION = Histogram(
    "rotator_rotation_duration_seconds",
    "Wall time of one rotation run (one policy, until done, waiting or failed).",
    ["provider"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
VENDOR_ERRORS = Counter(
    "rotator_vendor_call_errors_total",
    "Failed vendor API calls by vendor and HTTP status ('network' when none).",
    ["vendor", "status"],
)


StateRow = tuple[str, datetime | None, datetime | None, bool]


class StateCollector(Collector):
    """Per-policy gauges computed from the audit database when Prometheus scrapes.

    ``read_state`` returns, per policy: since when its key is current, its last
    completed rotation, and whether a rotation of it needs attention.
    """

    def __init__(self, read_state: Callable[[], list[StateRow]]) -> None:
        self._read_state = read_state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = datetime.now(UTC)
        age = GaugeMetricFamily(
            "rotator_key_age_seconds", "Age of the policy's current key.", labels=["policy"]
        )
        since = GaugeMetricFamily(
            "rotator_seconds_since_last_success",
            "Seconds since the policy's last completed rotation.",
            labels=["policy"],
        )
        attention = GaugeMetricFamily(
            "rotator_rotations_needing_attention", "Rotations stopped until someone acts."
        )
        flagged = 0
        for policy, key_since, last_success, needs_attention in self._read_state():
            if key_since is not None:
                age.add_metric([policy], (now - key_since).total_seconds())
            if last_success is not None:
                since.add_metric([policy], (now - last_success).total_seconds())
            flagged += int(needs_attention)
        attention.add_metric([], flagged)
        yield age
        yield since
        yield attention


class PausedCollector(Collector):
    """``rotator_policy_paused{policy}``: 1 while a policy is held (paused or disabled), else 0.

    ``read_holds`` returns every configured policy with whether it is held now.
    """

    def __init__(self, read_holds: Callable[[], dict[str, bool]]) -> None:
        self._read_holds = read_holds

    def collect(self) -> Iterator[GaugeMetricFamily]:
        paused = GaugeMetricFamily(
            "rotator_policy_paused",
            "1 while the policy is paused by an operator or has enabled: false.",
            labels=["policy"],
        )
        for policy, is_held in sorted(self._read_holds().items()):
            paused.add_metric([policy], float(is_held))
        yield paused
