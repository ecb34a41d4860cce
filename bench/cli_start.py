"""CLI start time: `rotator --help` and `rotator rotate due` with nothing due, vs `python -c pass`.

Goal: at most 0.3 s wall for `rotate due` against PostgreSQL and against SQLite (a CronJob
starts the CLI every time). Median of 10 runs each; the CPU time (user + sys) of each run
is reported too, as it varies less than wall time with this shared machine's load.
Also a one-shot `rotate now` of one DigitalOcean policy on PostgreSQL, against an emulator
that answers at once: a run's fixed cost (start-up, one rotation, exit), which the
throughput benchmark's concurrency-1 run pays once per `rotate now` process.

rotator's modules are compiled to bytecode first (by ``common``), as an installed package's are.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import openbao_server, postgres_server, rotator, write_result

from rotator.sandbox.digitalocean_gradient import DigitalOceanGradientEmulator
from rotator.sandbox.server import EmulatorServer

RUNS = 10
GOAL = 0.3


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_wall(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Median wall time and median CPU time of ``command``, over RUNS runs."""
    times, cpu = [], []
    for _ in range(RUNS):
        started, cpu_before = time.perf_counter(), _children_cpu()
        subprocess.run(command, capture_output=True, env={**os.environ, **(env or {})}, check=False)
        times.append(time.perf_counter() - started)
        cpu.append(_children_cpu() - cpu_before)
    return statistics.median(times), statistics.median(cpu)


def idle_rotate_due(
    database_url: str, bao_address: str, bao_token: str, tmp: Path
) -> tuple[float, float]:
    """`rotate due` against ``database_url`` with its one policy adopted (nothing due)."""
    name = "pg" if database_url.startswith("postgresql") else "sqlite"
    config = tmp / f"rotator-{name}.yaml"
    config.write_text(
        f"""
database: {{url: "{database_url}"}}
vault: {{address: "{bao_address}", auth: {{method: token}}}}
providers:
  do: {{type: digitalocean_gradient, token: "${{DO_TOKEN}}", base_url: "http://127.0.0.1:9"}}
policies:
  app:
    provider: do
    key: {{agent_uuid: a, api_key_uuid: k}}
    schedule: {{every: 30d}}
    vault: {{path: bench/{name}}}
"""
    )
    env = {"VAULT_TOKEN": bao_token, "DO_TOKEN": "x-token", "ROTATOR_CONFIG": str(config)}
    httpx.post(
        f"{bao_address}/v1/secret/data/bench/{name}",
        headers={"X-Vault-Token": bao_token},
        json={"data": {"api_key": "existing-key-value"}},
    ).raise_for_status()
    assert rotator("db", "upgrade", env=env).returncode == 0
    assert rotator("adopt", "app", env=env).returncode == 0
    return median_wall([sys.executable, "-m", "rotator", "rotate", "due"], env)


def one_rotation(
    database_url: str, bao_address: str, bao_token: str, tmp: Path
) -> tuple[float, float]:
    """`rotate now` of one DigitalOcean policy, rotated again on each run (grace 0)."""
    token = "bench-management-token-0123456789"
    # The emulator's rate limits are lifted (and rotator's pacing is off): RUNS rotations
    # in a few seconds would otherwise wait for DigitalOcean's quota.
    emulator = DigitalOceanGradientEmulator({token}, burst_limit=1_000_000, hourly_limit=1_000_000)
    with EmulatorServer(emulator) as server:
        slot = emulator.seed_slot()
        config = tmp / "rotator-now.yaml"
        config.write_text(
            f"""
database: {{url: "{database_url}"}}
vault: {{address: "{bao_address}", auth: {{method: token}}}}
providers:
  do: {{type: digitalocean_gradient, token: "${{DO_TOKEN}}", base_url: "{server.vendor_url}",
        rate_limit: null}}
policies:
  app:
    provider: do
    key: {json.dumps(slot.selector)}
    strategy: create_then_delete
    grace_period: 0s
    schedule: {{every: 30d}}
    vault: {{path: bench/now}}
"""
        )
        env = {"VAULT_TOKEN": bao_token, "DO_TOKEN": token, "ROTATOR_CONFIG": str(config)}
        httpx.post(
            f"{bao_address}/v1/secret/data/bench/now",
            headers={"X-Vault-Token": bao_token},
            json={"data": {"api_key": slot.secret}},
        ).raise_for_status()
        assert rotator("db", "upgrade", env=env).returncode == 0
        first = rotator("rotate", "now", "app", env=env)
        assert "completed" in first.stdout, first.stderr
        return median_wall([sys.executable, "-m", "rotator", "rotate", "now", "app"], env)


def main() -> None:
    with postgres_server() as pg, openbao_server() as bao, tempfile.TemporaryDirectory() as tmp:
        measured = {
            "python_pass": median_wall([sys.executable, "-c", "pass"]),
            "help": median_wall([sys.executable, "-m", "rotator", "--help"]),
            "rotate_due_nothing_due_postgresql": idle_rotate_due(
                pg.create_database("bench"), bao.address, bao.root_token, Path(tmp)
            ),
            "rotate_due_nothing_due_sqlite": idle_rotate_due(
                f"sqlite:///{tmp}/rotator.db", bao.address, bao.root_token, Path(tmp)
            ),
            "rotate_now_one_policy_postgresql": one_rotation(
                pg.create_database("bench_now"), bao.address, bao.root_token, Path(tmp)
            ),
        }
    figures: dict[str, object] = {}
    for key, (wall, cpu) in measured.items():
        figures[f"{key}_s"] = round(wall, 3)
        figures[f"{key}_cpu_s"] = round(cpu, 3)
    due = [key for key in measured if key.startswith("rotate_due")]
    figures["goal_s"] = GOAL
    figures["goal_met"] = all(measured[key][0] <= GOAL for key in due)
    path = write_result("cli_start", figures)
    print(f"{'what':<36}{'median wall (s)':>16}{'median CPU (s)':>16}")
    for key, (wall, cpu) in measured.items():
        print(f"{key:<36}{wall:>16.3f}{cpu:>16.3f}")
    print(f"goal <= {GOAL}s met: {figures['goal_met']}  -> {path}")


if __name__ == "__main__":
    main()
