"""Rotation throughput against the network floor, over real PostgreSQL and OpenBao.

1,000 policies across the four sandbox vendors, every vendor call delayed by
50 ms, `rotate now --all --concurrency 32`, grace 0 so revokes are included.
The floor is what the network alone allows: concurrency / (vendor calls per
rotation x 50 ms). Also: the same with concurrency 1 (fewer policies), and a
plain sequential httpx script doing the bare calls, as a user would write it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import httpx
from common import (
    OpenBaoServer,
    PostgresServer,
    cpu_seconds,
    openbao_server,
    postgres_server,
    rotator,
    write_result,
)

from rotator.providers.registry import VENDORS
from rotator.sandbox.registry import emulator_class
from rotator.sandbox.server import Emulator, EmulatorServer

DELAY = 0.05
TOKEN = "bench-management-token-0123456789"
POLICIES = int(os.environ.get("BENCH_POLICIES", "1000"))
SEQUENTIAL_POLICIES = int(os.environ.get("BENCH_SEQUENTIAL_POLICIES", "40"))


def emulator(vendor: str) -> Emulator:
    """The vendor's emulator, with DigitalOcean's rate limit lifted.

    The floor is the network's. DigitalOcean allows 250 calls a minute per account, which
    would pace 250 rotations on one account to about four minutes (rotator paces itself to
    the vendor's documented limit, and honours 429s) and measure the vendor's quota, not
    rotator: the emulator's limits are lifted and the providers' pacing is off.
    """
    if vendor == "digitalocean_gradient":
        from rotator.sandbox.digitalocean_gradient import DigitalOceanGradientEmulator

        return DigitalOceanGradientEmulator({TOKEN}, burst_limit=1_000_000, hourly_limit=1_000_000)
    return emulator_class(vendor)({TOKEN})


def run(
    pg: PostgresServer, bao: OpenBaoServer, policies: int, concurrency: int, tmp: Path
) -> dict[str, float]:
    database_url = pg.create_database(f"bench_{concurrency}_{policies}")
    servers = {v: EmulatorServer(emulator(v), delay=DELAY).start() for v in VENDORS}
    lines = [
        f'database: {{url: "{database_url}"}}',
        f'vault: {{address: "{bao.address}", auth: {{method: token}}}}',
        "daemon: {concurrency: 32}",
        "providers:",
    ]
    for vendor, server in servers.items():
        lines.append(
            f'  {vendor}: {{type: {vendor}, token: "${{T}}", base_url: "{server.vendor_url}", '
            "rate_limit: null}"
        )
    lines.append("policies:")
    vendors = list(servers)
    with httpx.Client(headers={"X-Vault-Token": bao.root_token}) as vault:
        for n in range(policies):
            vendor = vendors[n % len(vendors)]
            slot = servers[vendor].emulator.seed_slot()
            path = f"bench{concurrency}/p{n}"
            vault.post(
                f"{bao.address}/v1/secret/data/{path}",
                json={"data": {"api_key": slot.secret}},
            ).raise_for_status()
            key = json.dumps(slot.selector)
            lines.append(
                f"  p{n}: {{provider: {vendor}, key: {key}, strategy: create_then_delete, "
                f"schedule: {{every: 30d}}, grace_period: 0s, vault: {{path: {path}}}}}"
            )
    config = tmp / f"rotator-{concurrency}.yaml"
    config.write_text("\n".join(lines) + "\n")
    env = {
        "VAULT_TOKEN": bao.root_token,
        "T": TOKEN,
        "ROTATOR_CONFIG": str(config),
        "ROTATOR_LOG_LEVEL": "warning",
    }
    assert rotator("db", "upgrade", env=env).returncode == 0
    for server in servers.values():
        server.log.clear()
    cpu_before = cpu_seconds(pg, bao)
    started = time.perf_counter()
    result = rotator("rotate", "now", "--all", "--json", "--concurrency", str(concurrency), env=env)
    elapsed = time.perf_counter() - started
    cpu_after = cpu_seconds(pg, bao)
    cpu_ms = {k: round((cpu_after[k] - cpu_before[k]) * 1000 / policies, 2) for k in cpu_after}
    outcomes = [json.loads(line)["result"] for line in result.stdout.splitlines() if line]
    calls = sum(len(s.log) for s in servers.values())
    for server in servers.values():
        server.stop()
    per_rotation = calls / policies
    floor = concurrency / (per_rotation * DELAY)
    achieved = policies / elapsed
    return {
        "policies": policies,
        "concurrency": concurrency,
        "completed": outcomes.count("completed"),
        "elapsed_s": round(elapsed, 2),
        "vendor_calls_per_rotation": round(per_rotation, 2),
        "floor_rotations_per_s": round(floor, 2),
        "achieved_rotations_per_s": round(achieved, 2),
        "achieved_over_floor": round(achieved / floor, 3),
        # What the CPU allows: every component's CPU per rotation against the machine's cores.
        # rotator itself runs on one core at a time (the GIL), whatever its thread count.
        "cpu_ms_per_rotation": cpu_ms,
        "cpu_ceiling_rotations_per_s": round(
            min((os.cpu_count() or 1) * 1000 / sum(cpu_ms.values()), 1000 / cpu_ms["rotator"]),
            1,
        ),
    }


def sequential_baseline(bao: OpenBaoServer, policies: int) -> dict[str, float]:
    """What a user writes instead: create, write Vault, delete the old key, one after another."""
    from rotator.sandbox.digitalocean_gradient import DigitalOceanGradientEmulator

    server = EmulatorServer(DigitalOceanGradientEmulator({TOKEN}), delay=DELAY).start()
    slots = [server.emulator.seed_slot() for _ in range(policies)]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    started = time.perf_counter()
    with (
        httpx.Client(base_url=server.vendor_url, headers=headers) as api,
        httpx.Client(headers={"X-Vault-Token": bao.root_token}) as vault,
    ):
        for n, slot in enumerate(slots):
            agent = slot.selector["agent_uuid"]
            new = api.post(f"/v2/gen-ai/agents/{agent}/api_keys", json={"name": f"k{n}"}).json()
            vault.post(
                f"{bao.address}/v1/secret/data/baseline/p{n}",
                json={"data": {"api_key": new["api_key_info"]["secret_key"]}},
            ).raise_for_status()
            api.delete(f"/v2/gen-ai/agents/{agent}/api_keys/{slot.key_id}")
    elapsed = time.perf_counter() - started
    server.stop()
    return {
        "policies": policies,
        "elapsed_s": round(elapsed, 2),
        "rotations_per_s": round(policies / elapsed, 2),
        "floor_rotations_per_s": round(1 / (2 * DELAY), 2),
    }


def main() -> None:
    with postgres_server() as pg, openbao_server() as bao, tempfile.TemporaryDirectory() as tmp:
        concurrent = run(pg, bao, POLICIES, 32, Path(tmp))
        single = run(pg, bao, SEQUENTIAL_POLICIES, 1, Path(tmp))
        baseline = sequential_baseline(bao, SEQUENTIAL_POLICIES)
    figures = {
        "vendor_delay_s": DELAY,
        "concurrency_32": concurrent,
        "concurrency_1": single,
        "plain_sequential_httpx": baseline,
        "goal_achieved_over_floor": 0.9,
        "goal_met": concurrent["achieved_over_floor"] >= 0.9,
    }
    path = write_result("throughput", figures)
    print(f"{'run':<24}{'policies':>9}{'elapsed s':>11}{'rot/s':>9}{'floor':>9}{'ratio':>8}")
    for name, row in (("rotator, concurrency 32", concurrent), ("rotator, concurrency 1", single)):
        print(
            f"{name:<24}{row['policies']:>9}{row['elapsed_s']:>11}"
            f"{row['achieved_rotations_per_s']:>9}{row['floor_rotations_per_s']:>9}"
            f"{row['achieved_over_floor']:>8}"
        )
    print(
        f"{'plain httpx, sequential':<24}{baseline['policies']:>9}{baseline['elapsed_s']:>11}"
        f"{baseline['rotations_per_s']:>9}{baseline['floor_rotations_per_s']:>9}"
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
