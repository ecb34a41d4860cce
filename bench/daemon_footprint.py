"""Daemon footprint at 10,000 policies: memory, one scheduling pass, and `rotator validate`.

Goals: RSS at most 100 MB after start and after a sweep; one pass at most 10 ms;
`rotator validate` at most 1.0 s (its CPU time, user + sys, is reported too: it varies
less with this shared machine's load). Policies are adopted (the steady state: nothing
due), so the pass measures the work done every tick, not rotations. RSS is read
from a real `rotator daemon` process (1 s tick, measured again after five
seconds of sweeps, and after three scrapes of /metrics, which a daemon in service gets
every 15-60 s: reported beside the goal, which names start and sweeps); the pass is
timed in this process on a second Daemon.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from common import free_port, openbao_server, postgres_server, rotator, write_result

POLICIES = 10_000


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def daemon_rss(env: dict[str, str], port: int) -> tuple[float, float, float]:
    """RSS of a real `rotator daemon` once ready, again after a few sweeps (1 s tick), and
    after three scrapes of /metrics (every policy's gauges, read at scrape time)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rotator", "daemon"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError("the daemon did not become ready")
        after_start = rss_mb(process.pid)
        time.sleep(5)
        after_sweeps = rss_mb(process.pid)
        for _ in range(3):
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=60).raise_for_status()
        return after_start, after_sweeps, rss_mb(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def main() -> None:
    from sqlalchemy import insert

    from rotator.audit import migrations
    from rotator.audit.store import AuditStore
    from rotator.audit.tables import policy_state
    from rotator.config.loader import load_config
    from rotator.providers.registry import provider_class
    from rotator.scheduler import Daemon
    from rotator.secret import Secret

    with postgres_server() as pg, openbao_server() as bao, tempfile.TemporaryDirectory() as tmp:
        pg.create_database("bench")
        port = free_port()
        lines = [
            f'database: {{url: "{pg.url("bench")}"}}',
            f'vault: {{address: "{bao.address}", auth: {{method: token}}}}',
            f"daemon: {{port: {port}, host: 127.0.0.1, tick: 1s}}",
            "providers:",
            '  do: {type: digitalocean_gradient, token: "${T}", base_url: "http://127.0.0.1:9"}',
            "policies:",
        ]
        lines += [
            f"  p{n}: {{provider: do, key: {{agent_uuid: a{n}, api_key_uuid: k{n}}}, "
            f"schedule: {{every: 30d}}, vault: {{path: fleet/p{n}}}}}"
            for n in range(POLICIES)
        ]
        config_path = Path(tmp) / "rotator.yaml"
        config_path.write_text("\n".join(lines) + "\n")
        os.environ.update({"VAULT_TOKEN": bao.root_token, "T": "token-value"})
        env = {"ROTATOR_CONFIG": str(config_path)}
        store = AuditStore.open(Secret(pg.url("bench")))
        migrations.upgrade(store.engine)
        now = datetime.now(UTC)
        with store.engine.begin() as conn:
            conn.execute(
                insert(policy_state),
                [
                    {
                        "policy": f"p{n}",
                        "current_key_id": f"k{n}",
                        "adopted_at": now,
                        "updated_at": now,
                    }
                    for n in range(POLICIES)
                ],
            )
        store.dispose()

        validate_runs, validate_cpu = [], []
        for _ in range(3):
            started, cpu_started = time.perf_counter(), _children_cpu()
            assert rotator("validate", env=env).returncode == 0
            validate_runs.append(time.perf_counter() - started)
            validate_cpu.append(_children_cpu() - cpu_started)

        after_start, after_pass, after_scrapes = daemon_rss(env, port)
        daemon = Daemon(config_path, load_config(config_path, provider_class))
        daemon._schedule_policies(daemon.engine.config, daemon.engine.store.all_policy_states())
        passes = []
        for _ in range(5):
            started = time.perf_counter()
            daemon._sweep()
            passes.append(time.perf_counter() - started)
        daemon.engine.close()
    figures = {
        "policies": POLICIES,
        "rss_after_start_mb": round(after_start, 1),
        "rss_after_sweeps_mb": round(after_pass, 1),
        "rss_after_scrapes_mb": round(after_scrapes, 1),
        "scheduling_pass_median_ms": round(sorted(passes)[2] * 1000, 1),
        "validate_median_s": round(sorted(validate_runs)[1], 2),
        "validate_cpu_median_s": round(sorted(validate_cpu)[1], 2),
        "goals": {"rss_mb": 100, "pass_ms": 10, "validate_s": 1.0},
    }
    figures["goals_met"] = {
        "rss": max(after_start, after_pass) <= 100,
        "pass": figures["scheduling_pass_median_ms"] <= 10,
        "validate": figures["validate_median_s"] <= 1.0,
    }
    path = write_result("daemon_footprint", figures)
    for key, value in figures.items():
        print(f"{key:<30}{value}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
