"""Memory growth: RSS of one rotator process after 1,000 rotations and after 10,000.

Goal: the second within 10% of the first (a daemon that runs for months must not
grow with the rotations it has done). 100 DigitalOcean policies (no delay) are
rotated over and over, grace 0 so every rotation runs to its end, by a separate
process holding one daemon's objects (``rotator.scheduler.Daemon``: its engine,
HTTP endpoint and metrics collectors) that calls the engine from a thread pool of
the daemon's concurrency, as its scheduler would. The scheduler itself is not
started: it would rotate each policy once per schedule, far too slowly for 10,000
rotations. ``BENCH_ROTATIONS`` sets the total (default 10,000).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from common import free_port, openbao_server, postgres_server, rotator, write_result

POLICIES = 100
ROTATIONS = int(os.environ.get("BENCH_ROTATIONS", "10000"))
FIRST = ROTATIONS // 10
TOKEN = "bench-management-token-0123456789"
GOAL = 0.10


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def drive(config_path: str) -> None:
    """In the measured process: rotate every policy in turn until ROTATIONS are done."""
    from rotator.config.loader import load_config
    from rotator.log import configure_logging
    from rotator.providers.registry import provider_class
    from rotator.scheduler import Daemon
    from rotator.vocabulary import Result

    configure_logging(level="warning", json=True)
    daemon = Daemon(Path(config_path), load_config(Path(config_path), provider_class))
    names = list(daemon.engine.config.policies)
    figures: dict[str, Any] = {}
    failures: list[str] = []
    with ThreadPoolExecutor(daemon.engine.config.daemon.concurrency) as pool:
        done = 0
        while done < ROTATIONS:
            batch = names[: min(len(names), ROTATIONS - done)]
            outcomes = list(pool.map(daemon.engine.rotate_now, batch))
            failures += [
                f"{o.policy}: {o.result.value}: {o.message}"
                for o in outcomes
                if o.result is not Result.COMPLETED
            ]
            done += len(batch)
            if done >= FIRST and "rss_after_first_mb" not in figures:
                figures["rss_after_first_mb"] = rss_mb()
    figures["rss_after_all_mb"] = rss_mb()
    figures["failures"] = failures
    daemon.engine.close()
    print(json.dumps(figures))


def main() -> None:
    from rotator.sandbox.digitalocean_gradient import DigitalOceanGradientEmulator
    from rotator.sandbox.server import EmulatorServer

    with postgres_server() as pg, openbao_server() as bao, tempfile.TemporaryDirectory() as tmp:
        server = EmulatorServer(
            DigitalOceanGradientEmulator({TOKEN}, burst_limit=10**9, hourly_limit=10**9)
        ).start()
        lines = [
            f'database: {{url: "{pg.create_database("bench_memory")}"}}',
            f'vault: {{address: "{bao.address}", auth: {{method: token}}}}',
            f"daemon: {{port: {free_port()}, host: 127.0.0.1, concurrency: 8}}",
            "providers:",
            f'  do: {{type: digitalocean_gradient, token: "${{T}}", base_url: '
            f'"{server.vendor_url}", rate_limit: null}}',
            "policies:",
        ]
        with httpx.Client(headers={"X-Vault-Token": bao.root_token}) as vault:
            for n in range(POLICIES):
                slot = server.emulator.seed_slot()
                vault.post(
                    f"{bao.address}/v1/secret/data/memory/p{n:03d}",
                    json={"data": {"api_key": slot.secret}},
                ).raise_for_status()
                lines.append(
                    f"  p{n:03d}: {{provider: do, key: {json.dumps(slot.selector)}, "
                    "schedule: {every: 30d}, grace_period: 0s, "
                    f"vault: {{path: memory/p{n:03d}}}}}"
                )
        config = Path(tmp) / "rotator.yaml"
        config.write_text("\n".join(lines) + "\n")
        env = {"VAULT_TOKEN": bao.root_token, "T": TOKEN, "ROTATOR_CONFIG": str(config)}
        assert rotator("db", "upgrade", env=env).returncode == 0
        result = subprocess.run(
            [sys.executable, __file__, "--drive", str(config)],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            check=True,
        )
        server.stop()
    measured = json.loads(result.stdout.splitlines()[-1])
    first, last = measured["rss_after_first_mb"], measured["rss_after_all_mb"]
    figures = {
        "policies": POLICIES,
        "rotations": ROTATIONS,
        "failed_rotations": len(measured["failures"]),
        "failures": measured["failures"][:10],
        f"rss_after_{FIRST}_mb": round(first, 1),
        f"rss_after_{ROTATIONS}_mb": round(last, 1),
        "growth": round(last / first - 1, 3),
        "goal_growth": GOAL,
        "goal_met": last <= first * (1 + GOAL) and not measured["failures"],
    }
    path = write_result("memory_growth", figures)
    for key, value in figures.items():
        print(f"{key:<30}{value}")
    print(f"-> {path}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--drive"]:
        drive(sys.argv[2])
    else:
        main()
