"""CLI start time: `rotator --help` and `rotator rotate due` with nothing due, vs `python -c pass`.

Goal: under 0.6 s wall (a CronJob starts the CLI every time). Median of 10 runs each.

rotator's modules are compiled to bytecode first, as ``pip install`` does for an installed
package (and a container image holds): a checkout run with PYTHONDONTWRITEBYTECODE set
would otherwise compile every module from source on every start.
"""

from __future__ import annotations

import compileall
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import openbao_server, postgres_server, rotator, write_result

import rotator as rotator_package

RUNS = 10
GOAL = 0.6


def median_wall(command: list[str], env: dict[str, str] | None = None) -> float:
    import os

    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, env={**os.environ, **(env or {})}, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    with postgres_server() as pg, openbao_server() as bao, tempfile.TemporaryDirectory() as tmp:
        pg.create_database("bench")
        config = Path(tmp) / "rotator.yaml"
        config.write_text(
            f"""
database: {{url: "{pg.url("bench")}"}}
vault: {{address: "{bao.address}", auth: {{method: token}}}}
providers:
  do: {{type: digitalocean_gradient, token: "${{DO_TOKEN}}", base_url: "http://127.0.0.1:9"}}
policies:
  app:
    provider: do
    key: {{agent_uuid: a, api_key_uuid: k}}
    schedule: {{every: 30d}}
    vault: {{path: bench/app}}
"""
        )
        env = {"VAULT_TOKEN": bao.root_token, "DO_TOKEN": "x-token", "ROTATOR_CONFIG": str(config)}
        httpx.post(
            f"{bao.address}/v1/secret/data/bench/app",
            headers={"X-Vault-Token": bao.root_token},
            json={"data": {"api_key": "existing-key-value"}},
        ).raise_for_status()
        assert rotator("db", "upgrade", env=env).returncode == 0
        assert rotator("adopt", "app", env=env).returncode == 0
        compileall.compile_dir(Path(rotator_package.__file__).parent, quiet=1)
        figures = {
            "python_pass_s": median_wall([sys.executable, "-c", "pass"]),
            "help_s": median_wall([sys.executable, "-m", "rotator", "--help"]),
            "rotate_due_nothing_due_s": median_wall(
                [sys.executable, "-m", "rotator", "rotate", "due"], env
            ),
        }
    figures["goal_s"] = GOAL
    figures["goal_met"] = max(figures["help_s"], figures["rotate_due_nothing_due_s"]) < GOAL
    path = write_result("cli_start", figures)
    print(f"{'what':<28}{'median wall (s)':>16}")
    for key in ("python_pass_s", "help_s", "rotate_due_nothing_due_s"):
        print(f"{key:<28}{figures[key]:>16.3f}")
    print(f"goal < {GOAL}s met: {figures['goal_met']}  -> {path}")


if __name__ == "__main__":
    main()
