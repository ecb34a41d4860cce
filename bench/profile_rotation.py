"""Where rotator's CPU goes in a rotation: a py-spy profile of `rotate now --all` by component.

The throughput benchmark's concurrency-32 run (fewer policies: ``BENCH_PROFILE_POLICIES``,
default 300) under ``py-spy record --gil``, which samples the thread holding the GIL:
Python's own work, the part rotator can cut (C code that releases the GIL, such as
waiting on a socket, is not counted). Each sample is put in the first component that
matches its stack (see ``COMPONENTS``); the share of samples is printed with the top
functions of each component, and written to bench/results/profile_rotation.json.
py-spy is in the dev extra; its own CPU makes this run's timings meaningless, so only
the shares are reported (throughput.py measures the CPU).
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from common import openbao_server, postgres_server, write_result
from throughput import run

POLICIES = int(os.environ.get("BENCH_PROFILE_POLICIES", "300"))

# (component, markers): a sample belongs to the first component with a marker in its stack,
# searched from the innermost frame out, except the first three, which claim a whole stack.
COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("start-up (imports)", ("<frozen importlib",)),
    ("audit sealing (timer thread)", ("ChainSealer._timed_seal", "ChainSealer.seal (")),
    # Not Lease.write: a step's write made on the lock's session is an audit write.
    ("lock checks", ("_PostgresLease.confirm (", "_PostgresLease._take (", "PolicyLocks.")),
    ("logging", ("structlog/", "rotator/log.py", "logging/__init__")),
    (
        "Vault client (hvac, requests)",
        ("rotator/vault.py", "rotator/vault_transport.py", "hvac/", "requests/", "urllib3/"),
    ),
    ("vendor HTTP (httpx, parsing)", ("rotator/providers/", "httpx/", "httpcore/", "h11/")),
    ("audit writes and reads", ("rotator/audit/", "sqlalchemy/", "psycopg")),
    ("metrics", ("prometheus_client",)),
    ("config, engine, CLI", ("rotator/", "click/")),
]
WHOLE_STACK = 3


def component(frames: list[str]) -> str:
    joined = ";".join(frames)
    for name, markers in COMPONENTS[:WHOLE_STACK]:
        if any(marker in joined for marker in markers):
            return name
    for frame in reversed(frames):
        for name, markers in COMPONENTS[WHOLE_STACK:]:
            if any(marker in frame for marker in markers):
                return name
    return "other (threads, interpreter)"


def breakdown(raw: Path, top: int = 6) -> dict[str, dict[str, object]]:
    """Share of samples per component, with its functions holding the most samples."""
    shares: collections.Counter[str] = collections.Counter()
    functions: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)", ")", frame) for frame in stack.split(";")]
        name = component(frames)
        shares[name] += int(count)
        functions[name][frames[-1]] += int(count)
        total += int(count)
    return {
        name: {
            "share": round(count / total, 3),
            "top_leaf_functions": {
                f: round(c / total, 3) for f, c in functions[name].most_common(top)
            },
        }
        for name, count in shares.most_common()
    }


def main() -> None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with (
        postgres_server() as pg,
        openbao_server() as bao,
        tempfile.TemporaryDirectory() as tmp,
    ):
        raw = Path(tmp) / "profile.raw"
        wrapper = (py_spy, "record", "--gil", "-r", "250", "-f", "raw", "-o", str(raw), "--")
        result = run(pg, bao, POLICIES, 32, Path(tmp), wrapper=wrapper)
        components = breakdown(raw)
    figures = {"policies": POLICIES, "concurrency": 32, "completed": result["completed"]}
    path = write_result("profile_rotation", {**figures, "components": components})
    print(f"{'component':<34}{'share of samples':>18}")
    for name, row in components.items():
        print(f"{name:<34}{row['share']:>18.1%}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
