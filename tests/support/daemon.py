"""A daemon as it runs in production: ``rotator daemon`` in a subprocess, probed over HTTP."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.forkserver import Child
from tests.support.rig import Rig
from tests.support.servers import free_port


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout}s")


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class RunningDaemon:
    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.port = free_port()
        rig.extra_config = self.daemon_settings()
        rig.write_config()
        self.process: Child | None = None
        self.stderr = ""

    def daemon_settings(
        self, host: str | None = "127.0.0.1", extra: str = "", request_timeout: str = "2s"
    ) -> str:
        bind = f"host: {host}, " if host else ""
        timings = f"tick: 1s, shutdown_timeout: 5s, request_timeout: {request_timeout}"
        return f"""
        daemon: {{port: {self.port}, {bind}{timings}{extra}}}
        """

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

    def get_with_headers(self, path: str, headers: dict[str, str]) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", headers=headers, timeout=5)

    def metrics(self) -> Samples:
        """Every sample on /metrics, by name and label set."""
        return samples_of(self.get("/metrics").text)

    def reload(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def reloads(self, outcome: str) -> float:
        """How many reloads ended ``applied`` or ``refused``, as /metrics counts them."""
        [count] = series(self.metrics(), "rotator_config_reloads_total", outcome=outcome)
        return count

    def stop(self) -> tuple[int, float]:
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.stderr = self.process.communicate()[1]
        return code, time.monotonic() - started

    def log_events(self) -> list[dict[str, object]]:
        """The JSON log lines the stopped daemon wrote."""
        return [json.loads(line) for line in self.stderr.splitlines() if line.startswith("{")]


def samples_of(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def series(samples: Samples, name: str, **labels: str) -> list[float]:
    """Values of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return [v for (n, have), v in samples.items() if n == name and wanted <= have]


def label_sets(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(have) for (n, have) in samples if n == name]
