"""Where the engine and the vendor HTTP layer report what metrics count: the process's recorder.

Only the daemon exposes metrics (``/metrics``): it installs the Prometheus recorder
(``rotator.metrics.PrometheusRecorder``) when it starts. A one-shot command (``rotate now``,
a CronJob's ``rotate due``) keeps the default, which records nothing, so it never imports
prometheus-client: counters that die with the process unread are not worth the import.

The vendor HTTP layer, far below the engine, learns the provider of the rotation it runs in
from ``provider_labels``, which the engine sets around each run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol


class Recorder(Protocol):
    """What is recorded; the labels are those of ``rotator.metrics``."""

    def rotation_timed(self, provider: str, provider_type: str, seconds: float) -> None:
        """One rotation run took ``seconds`` (until done, waiting in grace or failed)."""

    def rotation_ended(self, policy: str, provider: str, provider_type: str, outcome: str) -> None:
        """One rotation attempt ended with ``outcome`` (completed, failed, ...)."""

    def vendor_error(self, provider: str, provider_type: str, status: str) -> None:
        """One vendor call failed with HTTP ``status`` ("network" when none)."""


class NothingRecorded:
    """The recorder of a process that exposes no metrics."""

    def rotation_timed(self, provider: str, provider_type: str, seconds: float) -> None:
        pass

    def rotation_ended(self, policy: str, provider: str, provider_type: str, outcome: str) -> None:
        pass

    def vendor_error(self, provider: str, provider_type: str, status: str) -> None:
        pass


_recorder: Recorder = NothingRecorded()

#: (provider name, provider type) of the rotation running in this thread, for vendor errors.
_PROVIDER: ContextVar[tuple[str, str] | None] = ContextVar("rotator_provider", default=None)


def install(recorder: Recorder) -> Recorder:
    """Record into ``recorder`` from now on, in every thread; returns the one it replaces."""
    global _recorder
    previous, _recorder = _recorder, recorder
    return previous


def recorder() -> Recorder:
    """The process's recorder."""
    return _recorder


@contextmanager
def provider_labels(name: str, provider_type: str) -> Iterator[None]:
    """Label the vendor errors counted inside this block with the provider ``name``."""
    token = _PROVIDER.set((name, provider_type))
    try:
        yield
    finally:
        _PROVIDER.reset(token)


def count_vendor_error(vendor: str, status: str) -> None:
    """Count one failed vendor call (outside a rotation the provider name is unknown: "")."""
    name, provider_type = _PROVIDER.get() or ("", vendor)
    _recorder.vendor_error(name, provider_type, status)
